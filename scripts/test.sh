#!/usr/bin/env bash
# README's test command. Sets up the pinned nvcc 13.0 (so every kernel is compiled and the CUDA path is tested on
# the PTX simulator, tools/cuda-sim), then runs every test of the workspace: the engine, the simulator and its
# driver/cuBLAS/NCCL stand-ins. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/nvcc-env.sh
source scripts/nvcc-env.sh
"$NVCC" --version | tail -n 1
cargo test --release --workspace "$@"
