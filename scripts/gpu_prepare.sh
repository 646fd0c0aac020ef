#!/usr/bin/env bash
# Run on the CPU machine before a GPU session (issue 15): everything scripts/gpu_session.sh needs on a GPU machine
# that has no Rust toolchain, no network and no diffusers.
#
#   scripts/gpu_prepare.sh            build, strip, gather, check sizes, print the run-tool call
#   NO_BUILD=1 scripts/gpu_prepare.sh reuse target/release's binaries
#
# It builds the release binary (which also runs the kernel microbenchmarks: `bench kernels`) with the pinned nvcc 13.0 (scripts/nvcc-env.sh;
# the H200's 13.0 driver cannot load PTX from a newer nvcc), strips them into .device-bin/ (ignored), copies the
# MNIST training files there (../shared is not sent to the GPU machine), downloads the diffusers wheel pinned in
# scripts/parity/requirements.txt into .whl/ (ignored), checks that what travels stays under the 64 MiB limit, and prints the call.
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST_SRC=${MNIST_SRC:-../shared/data/mnist}
LIMIT=$((64 * 1024 * 1024))

# shellcheck source=scripts/nvcc-env.sh
source scripts/nvcc-env.sh
echo "nvcc: $("$NVCC" --version | tail -n 1)"
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release
fi
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p .device-bin
strip -o .device-bin/ddpm-cuda "$TARGET/release/ddpm-cuda"
n90=$(.device-bin/ddpm-cuda kernels | grep -c 'sm_90' || true)
if [ "$n90" -eq 0 ]; then
  echo "error: the binary carries no sm_90 kernels (was it built without nvcc?)" >&2
  exit 1
fi
echo "ddpm-cuda: $(.device-bin/ddpm-cuda --version), $n90 sm_90 ptxas lines"
git rev-parse HEAD >.device-bin/COMMIT
git diff --quiet || echo "dirty" >>.device-bin/COMMIT

mkdir -p .device-bin/mnist
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz; do
  cp "$MNIST_SRC/$f" .device-bin/mnist/
done

diffusers=$(sed -n 's/^diffusers==//p' scripts/parity/requirements.txt)
rm -rf .whl && mkdir -p .whl
pip_dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$@"
}
# diffusers needs filelock, huggingface-hub>=1.32, numpy, regex, requests, safetensors>=0.8, Pillow: the GPU image has
# them (device KINDS.md: huggingface_hub 1.33.0, safetensors 0.8.0). importlib_metadata is imported only on
# Python < 3.8 (diffusers/utils/import_utils.py), and the GPU image's python3 is 3.12, so it is not carried.
pip_dl "diffusers==$diffusers"
for w in .whl/*.whl; do
  unzip -p "$w" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' | sed "s|^|$(basename "$w"): |"
done

tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
carried=$(du -cb .device-bin .whl | tail -n 1 | cut -f1)
total=$((tree + carried))
echo
du -sh .device-bin/* .whl/*
printf 'travels: tree %.1f MiB + carried %.1f MiB = %.1f MiB of 64 MiB\n' \
  "$(echo "$tree / 1048576" | bc -l)" "$(echo "$carried / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -ge "$LIMIT" ]; then
  echo "error: over the 64 MiB limit" >&2
  exit 1
fi
cat <<'EOF'

The run-tool call (one run, ≤ 9 min of the 10-minute limit; docs/CUDA.md "GPU session"):
  run(command="BUDGET_S=540 bash scripts/gpu_session.sh", carry=[".device-bin", ".whl"], timeout_s=600)
A rerun of some phases while the machine is still warm (30 s), e.g.:
  run(command="ONLY='selftest' SELFTEST_FILTER=conv2d BUDGET_S=200 bash scripts/gpu_session.sh", carry=[".device-bin", ".whl"], timeout_s=240)
EOF
