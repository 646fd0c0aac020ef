#!/usr/bin/env bash
# Ours vs PyTorch, side by side in one run on the same machine: `ddpm-cuda bench train` and benches/train_torch.py
# at the same preset and batch size, alternating, then the ratio of img/s.
#   benches/compare_train.sh PRESET BATCH DEVICE [PYTHON] [STEPS]
# PyTorch's mode is TORCH_MODE (f32, bf16 or bf16-compile; default f32), its threads TORCH_THREADS (default: torch's).
set -euo pipefail
preset=${1:-mnist} batch=${2:-32} device=${3:-cpu} python=${4:-python3} steps=${5:-5}
bin=${DDPM_CUDA_BIN:-target/release/ddpm-cuda}
ours=$("$bin" bench train --preset "$preset" --batch-size "$batch" --device "$device" --warmup 2 --steps "$steps")
torch=$("$python" benches/train_torch.py --preset "$preset" --batch-size "$batch" --device "$device" --warmup 2 \
  --steps "$steps" --modes "${TORCH_MODE:-f32}" ${TORCH_THREADS:+--threads "$TORCH_THREADS"})
echo "$ours"
echo "$torch"
o=$(echo "$ours" | sed -E 's/.*: ([0-9.]+) img\/s.*/\1/')
t=$(echo "$torch" | python3 -c "import json, sys; print(json.loads(sys.stdin.readline())['img_per_s'])")
echo "ratio ours/torch img/s: $(python3 -c "print(round($o / $t, 3))")"
