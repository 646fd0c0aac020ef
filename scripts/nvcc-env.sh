# Source this: exports NVCC, the pinned CUDA 13.0 compiler, installing it from PyPI into a venv under
# ~/.cache/ddpm-cuda the first time (the H200's 13.0 driver cannot load PTX from a newer nvcc). An NVCC already set
# is kept.
if [ -z "${NVCC:-}" ]; then
  NVCC_VENV="${NVCC_VENV:-$HOME/.cache/ddpm-cuda/nvcc-13.0.88}"
  if ! ls "$NVCC_VENV"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
    echo "installing the pinned nvcc 13.0.88 into $NVCC_VENV" >&2
    python3 -m venv "$NVCC_VENV"
    "$NVCC_VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
  fi
  NVCC="$(ls "$NVCC_VENV"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc | head -n1)"
  export NVCC
fi
