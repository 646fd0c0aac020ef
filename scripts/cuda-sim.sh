#!/usr/bin/env bash
# Run COMMAND [ARGS...] on the CUDA simulator: libcuda.so / libcublas.so / libnccl.so stand-ins (tools/cuda-sim)
# that cudarc loads instead of NVIDIA's, so the CUDA backend runs its real PTX, with compute-sanitizer style checks, on a
# machine without a GPU.
#
#   scripts/cuda-sim.sh target/release/ddpm-cuda selftest --device cuda --filter add
#
# The stand-ins are only ever used when this script puts them first on LD_LIBRARY_PATH: on a GPU machine nothing
# changes unless you run through it (and through it you get the simulator, not the GPU).
#
# It builds the three cdylibs in release into target/cuda-sim (a separate target dir, so it can run from inside a
# `cargo test` without waiting for that build's lock), lays out target/cuda-sim/lib/ with libcuda.so(.1),
# libnccl.so(.2) and, unless CUDA_SIM_CUBLAS=0 (then target/cuda-sim/lib-no-cublas/), libcublas.so(.13), and runs
# COMMAND with that folder first on LD_LIBRARY_PATH.
#
# Environment passed through to the simulator:
#   DDPM_CUDA_SIM_REPORTS  file the sanitizer reports are appended to (a temp file if unset)
#   DDPM_CUDA_SIM_PROFILE  per-launch counters, one JSON object per line (appended), and a process summary at exit
#   DDPM_CUDA_SIM_THREADS  host threads per launch (default: all cores)
#   DDPM_CUDA_SIM_DEVICES  devices reported (default 1), each with its own memory
#   CUDA_SIM_NCCL_TIMEOUT_S  seconds a collective waits for the other ranks (default 120)
#   CUDA_SIM_CUBLAS=0      leave libcublas out (the backend then uses its own GEMM kernel)
#   CUDA_SIM_NO_BUILD=1    use the libraries already in target/cuda-sim/lib
#   CUDA_SIM_NATIVE=0      build for baseline x86-64 even where the host has AVX2/FMA (x86-64-v3)
#
# Exit status: COMMAND's, or 1 if COMMAND exited 0 but the simulator wrote a report.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$root/target/cuda-sim"
if [[ "${CUDA_SIM_NO_BUILD:-0}" != 1 ]]; then
    # On an x86-64 host with AVX2/FMA/BMI2 (x86-64-v3) build for that level: hardware fused multiply-add inline and
    # wider vectors in the interpreter's lane loops (results are the same bits either way). Only when this host has
    # them, since the script builds where it runs; cargo rebuilds if a cached build used other flags.
    flags="${RUSTFLAGS:-}"
    if [[ "$(uname -m)" == x86_64 && "${CUDA_SIM_NATIVE:-1}" != 0 ]] \
        && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw bmi2 /proc/cpuinfo \
        && grep -qw movbe /proc/cpuinfo && grep -qw f16c /proc/cpuinfo && grep -qw abm /proc/cpuinfo; then
        flags="${flags:+$flags }-C target-cpu=x86-64-v3"
    fi
    (cd "$root" && RUSTFLAGS="$flags" cargo build --release --quiet -p cuda-sim-driver -p cuda-sim-cublas -p cuda-sim-nccl \
        --target-dir "$target") >&2
fi
# Several runs may lay the folder out at once (tests in parallel), and running processes keep the files they
# loaded: install by atomic rename, only when the content changed.
install() { # SRC NAME
    if ! cmp -s "$1" "$lib/$2"; then
        cp "$1" "$lib/.$2.$$" && mv -f "$lib/.$2.$$" "$lib/$2"
    fi
}
link() { # TARGET NAME
    [[ -L "$lib/$2" ]] || ln -s "$1" "$lib/$2" 2>/dev/null || [[ -L "$lib/$2" ]]
}
if [[ "${CUDA_SIM_CUBLAS:-1}" != 0 ]]; then
    lib="$target/lib"
    mkdir -p "$lib"
    install "$target/release/libcublas.so" libcublas.so
    link libcublas.so libcublas.so.13
else
    lib="$target/lib-no-cublas"
    mkdir -p "$lib"
fi
install "$target/release/libcuda.so" libcuda.so
link libcuda.so libcuda.so.1
install "$target/release/libnccl.so" libnccl.so
link libnccl.so libnccl.so.2

export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
own_reports=0
if [[ -z "${DDPM_CUDA_SIM_REPORTS:-}" ]]; then
    DDPM_CUDA_SIM_REPORTS="$(mktemp -t cuda-sim-reports.XXXXXX)"
    export DDPM_CUDA_SIM_REPORTS
    own_reports=1
fi
: >>"$DDPM_CUDA_SIM_REPORTS"
before=$(wc -c <"$DDPM_CUDA_SIM_REPORTS")

set +e
"$@"
status=$?
set -e

after=$(wc -c <"$DDPM_CUDA_SIM_REPORTS")
if [[ $status -eq 0 && $after -gt $before ]]; then
    echo "cuda-sim: the simulator reported errors (see above / $DDPM_CUDA_SIM_REPORTS)" >&2
    status=1
fi
if [[ $own_reports -eq 1 && $after -eq 0 ]]; then
    rm -f "$DDPM_CUDA_SIM_REPORTS"
fi
exit $status
