#!/usr/bin/env bash
# One pass of everything that needs a GPU, logging to $OUT (or ./gpu-out): the ptxas report, the selftest (every
# kernel against the CPU reference), the kernel microbenchmarks and the training throughput.
#
#   scripts/gpu_session.sh                 build with cargo (needs a Rust toolchain and nvcc on the machine)
#   BIN=path/to/ddpm-cuda BENCH=path/to/kernels_cuda-<hash> scripts/gpu_session.sh
#                                          use binaries built elsewhere (cargo bench --no-run prints the bench's)
#   SELFTEST_FILTER=conv2d scripts/gpu_session.sh   only some selftest cases
#
# cudarc loads libcuda and libcublas at run time; pip-installed CUDA keeps libcublas in site-packages, so its
# directory is added to LD_LIBRARY_PATH here (without it, linear and attention fall back to the GEMM kernel).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
for d in $(python3 - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
seen = set()
for r in roots:
    for p in glob.glob(os.path.join(r, "nvidia", "**", "libcublas.so*"), recursive=True):
        seen.add(os.path.dirname(p))
print("\n".join(sorted(seen)))
PY
) /usr/local/cuda/lib64; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/env.txt"

if [ -z "${BIN:-}" ]; then
  export NVCC=${NVCC:-$(command -v nvcc)}
  cargo build --release 2>&1 | tail -3
  cargo bench --bench kernels_cuda --no-run 2>&1 | tail -2
  TARGET=${CARGO_TARGET_DIR:-target}
  BIN=$TARGET/release/ddpm-cuda
  BENCH=$(ls -t "$TARGET"/release/deps/kernels_cuda-* 2>/dev/null | grep -v '\.d$' | head -1)
fi

"$BIN" kernels > "$OUT/ptxas.txt"
echo "== selftest"
"$BIN" selftest --device cuda ${SELFTEST_FILTER:+--filter "$SELFTEST_FILTER"} 2>&1 | tee "$OUT/selftest.txt"
echo "== kernel benchmarks"
[ -n "${BENCH:-}" ] && "$BENCH" ${BENCH_FILTER:-} 2>&1 | tee "$OUT/kernels_cuda.md"
echo "== training throughput"
"$BIN" bench train --preset cifar10 --batch-size 128 --device cuda --warmup 3 --steps 10 2>&1 | tee "$OUT/bench_train.txt"
