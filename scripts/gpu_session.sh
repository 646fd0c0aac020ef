#!/usr/bin/env bash
# One GPU session (issue 15), in one run with a wall-clock budget: everything that needs a GPU, side by side with
# PyTorch on the same card, and a short MNIST training run. Every phase is independent (a failing or timed-out
# phase is recorded and the next one runs) and each is capped so that the whole script ends inside BUDGET_S.
#
#   scripts/gpu_prepare.sh        (on the CPU machine: binaries, wheels and MNIST into .device-bin/ and .whl/)
#   scripts/gpu_session.sh        (on the GPU machine; docs/CUDA.md "GPU session" has the exact run-tool call)
#
# Phases, in order (names for ONLY / SKIP):
#   env        nvidia-smi, driver, libcublas on LD_LIBRARY_PATH, the ptxas report          (seconds)
#   mnist      `train --preset mnist` for MNIST_SECS, started in the background first; it overlaps selftest
#              and sanity (which time nothing) and is waited for before the timed phases
#   selftest   `selftest --device cuda --shapes full` (every case)                         (~1-2 min)
#   sanity     --device cuda / auto / cuda:1 / CUDA_VISIBLE_DEVICES= / no libcublas messages (~20 s)
#   mnistsample  64 EMA samples (DDPM, 1000 steps) from the MNIST run: grid png           (~15 s)
#   kernels    `bench kernels`: each op's microbenchmark table                                      (~30 s)
#   train      `bench train --preset cifar10 --batch-size 128` for each of PRECISIONS    (~30 s each)
#   torch      benches/train_torch.py, same model and step, modes TORCH_MODES             (~30 s each)
#   tsample    diffusers' DDPMPipeline (bf16, benches/sample_torch.py) at batch SAMPLE_BATCHES: SAMPLE_LO and
#              SAMPLE_HI denoising steps timed, extrapolated to 1,000 steps               (~30 s)
#   sample     our DDPM sampler, the same U-Net (random weights) and batches, the same two-point timing with a
#              T = SAMPLE_LO and a T = SAMPLE_HI schedule                                  (~1-2 min)
#   compile    benches/train_torch.py --modes bf16-compile (last: compilation is the slowest, least sure part)
#
# Environment (all optional):
#   BUDGET_S=540          total wall-clock budget; a phase gets min(its cap, what is left), or is skipped
#   ONLY="selftest kernels"   run only these phases;  SKIP="mnist compile"   leave these out
#   BIN                   the ddpm-cuda binary (default .device-bin/ddpm-cuda; else cargo builds it)
#   PYTHON=python3        the Python with torch; diffusers comes from .whl/ if it is not importable
#   PRECISIONS="f32 bf16" precisions for `bench train`, each passed as "$PRECISION_FLAG <p>"
#   GRAPHS_OFF_PRECISIONS="bf16"  precisions also timed with `--cuda-graphs off` (the default captures the step)
#                         (PRECISION_FLAG="--precision"; the binary's default on CUDA is bf16)
#   TORCH_MODES="f32 bf16"   COMPILE_MODES="bf16-compile"
#   TRAIN_WARMUP=3 TRAIN_STEPS=15      ours and PyTorch's training steps (compile: COMPILE_WARMUP=3)
#   SAMPLE_BATCHES="256 1024" SAMPLE_LO=5 SAMPLE_HI=25 SAMPLE_TORCH_MODES="bf16"
#   MNIST_SECS=180 MNIST_DIR=.device-bin/mnist MNIST_BATCH=128 MNIST_PARALLEL=1 MNIST_NUM=64
#   MNIST_SAMPLER="--sampler ddpm"
#   SELFTEST_FILTER=conv2d  BENCH_FILTER=conv
#   DEVICE=cuda TRAIN_PRESET=cifar10 TRAIN_BATCH=128 SAMPLE_PRESET=cifar10   (a CPU dry run of the plumbing:
#     DEVICE=cpu TRAIN_PRESET=tiny TRAIN_BATCH=2 SAMPLE_PRESET=tiny SAMPLE_BATCHES="2 4" SAMPLE_LO=2 SAMPLE_HI=3 …;
#     selftest and sanity then fail, as they must without a GPU, and the rest still runs)
#
# What comes back under $OUT (≤ 8 files): summary.md (phase times, the selftest and kernel tables, the side-by-side
# table; also printed last), results.jsonl (one JSON line per measurement), logs.tgz (every log, repacked after each
# phase), mnist_samples.png, mnist_loss.png, mnist_metrics.jsonl, mnist_ema_bf16.tar (the EMA weights as a
# diffusers folder in bf16, for re-sampling on the CPU).
#
# cudarc loads libcuda and libcublas at run time; pip-installed CUDA keeps libcublas in site-packages, so its
# directory is added to LD_LIBRARY_PATH here (without it, linear and attention fall back to the GEMM kernel).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s.%N)
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/gpu-session.XXXXXX)}
LOGS=$WORK/logs
mkdir -p "$LOGS"
RESULTS=$OUT/results.jsonl
PHASES_TSV=$WORK/phases.tsv
: >"$RESULTS"
: >"$PHASES_TSV"
BUDGET_S=${BUDGET_S:-540}
exec > >(tee -a "$LOGS/console.log") 2>&1
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TRAIN_PRESET=${TRAIN_PRESET:-cifar10}
TRAIN_BATCH=${TRAIN_BATCH:-128}
SAMPLE_PRESET=${SAMPLE_PRESET:-cifar10}
PRECISIONS=${PRECISIONS:-f32 bf16}
GRAPHS_OFF_PRECISIONS=${GRAPHS_OFF_PRECISIONS:-bf16}
PRECISION_FLAG=${PRECISION_FLAG:---precision}
TORCH_MODES=${TORCH_MODES:-f32 bf16}
COMPILE_MODES=${COMPILE_MODES:-bf16-compile}
TRAIN_WARMUP=${TRAIN_WARMUP:-3}
TRAIN_STEPS=${TRAIN_STEPS:-15}
COMPILE_WARMUP=${COMPILE_WARMUP:-3}
SAMPLE_BATCHES=${SAMPLE_BATCHES:-256 1024}
SAMPLE_LO=${SAMPLE_LO:-5}
SAMPLE_HI=${SAMPLE_HI:-25}
[ "$SAMPLE_LO" -ge 2 ] || SAMPLE_LO=2 # our schedules need T >= 2
SAMPLE_TORCH_MODES=${SAMPLE_TORCH_MODES:-bf16}
MNIST_SECS=${MNIST_SECS:-180}
MNIST_BATCH=${MNIST_BATCH:-128}
MNIST_PARALLEL=${MNIST_PARALLEL:-1}
MNIST_NUM=${MNIST_NUM:-64}
MNIST_SAMPLER=${MNIST_SAMPLER:---sampler ddpm}
if [ -z "${MNIST_DIR:-}" ]; then
  for d in .device-bin/mnist ../shared/data/mnist shared/data/mnist; do
    [ -e "$d/train-images-idx3-ubyte.gz" ] || [ -e "$d/train-images-idx3-ubyte" ] && { MNIST_DIR=$d; break; }
  done
fi
MNIST_DIR=${MNIST_DIR:-.device-bin/mnist}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

now() { date +%s.%N; }
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }
left() { echo $((BUDGET_S - $(elapsed))); }
want() { # want PHASE: in ONLY (if set) and not in SKIP
  local p=$1
  [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $p "* ]] && return 1
  [[ " ${SKIP:-} " == *" $p "* ]] && return 1
  return 0
}
pack() { tar czf "$WORK/logs.tgz" -C "$WORK" logs phases.tsv 2>/dev/null && cp "$WORK/logs.tgz" "$OUT/logs.tgz"; }
# phase NAME CAP MIN FUNCTION: run FUNCTION under `timeout min(CAP, left - 5)`, or skip it if less than MIN is left.
phase() {
  local name=$1 cap=$2 min=$3 fn=$4 t rc s
  if ! want "$name"; then
    printf '%s\tskipped (ONLY/SKIP)\t0\n' "$name" >>"$PHASES_TSV"
    return
  fi
  t=$(($(left) - 5))
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt "$min" ]; then
    echo "== $name: skipped, ${t}s of the budget left (needs $min)"
    printf '%s\tskipped (budget)\t0\n' "$name" >>"$PHASES_TSV"
    return
  fi
  echo "== $name (cap ${t}s, at $(elapsed)s)"
  s=$(now)
  timeout -k 10 "$t" bash -c "set -o pipefail; $fn" >"$LOGS/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  local status=ok
  [ "$rc" -ne 0 ] && status="FAILED (exit $rc)"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMED OUT after ${t}s"
  printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >>"$PHASES_TSV"
  tail -n "${TAIL_LINES:-6}" "$LOGS/$name.log" | sed 's/^/   /'
  echo "   -> $status, ${secs}s"
  pack
}
export LOGS RESULTS WORK OUT PYTHON DEVICE TRAIN_PRESET TRAIN_BATCH SAMPLE_PRESET PRECISIONS PRECISION_FLAG TORCH_MODES COMPILE_MODES TRAIN_WARMUP TRAIN_STEPS \
  COMPILE_WARMUP SAMPLE_BATCHES SAMPLE_LO SAMPLE_HI SAMPLE_TORCH_MODES MNIST_SECS MNIST_BATCH MNIST_DIR MNIST_NUM MNIST_SAMPLER

# ---- libraries, binaries, Python packages --------------------------------------------------------------------
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
for d in $("$PYTHON" - <<'PY' 2>/dev/null
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
export ORIG_LD_LIBRARY_PATH
chmod +x .device-bin/ddpm-cuda 2>/dev/null # in case the carry dropped the mode bits
if [ -z "${BIN:-}" ] && [ -x .device-bin/ddpm-cuda ]; then BIN=$PWD/.device-bin/ddpm-cuda; fi
if [ -z "${BIN:-}" ]; then
  export NVCC=${NVCC:-$(command -v nvcc)}
  cargo build --release 2>&1 | tail -3
  TARGET=${CARGO_TARGET_DIR:-target}
  BIN=$TARGET/release/ddpm-cuda
fi
export BIN
if ! "$PYTHON" -c "import diffusers" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$LOGS/pip.log" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# run_json KIND KEY=VALUE… -- COMMAND…: run COMMAND, tee its output, and turn "bench train: …: X img/s" into a JSON line.
run_json() {
  local kind=$1; shift
  local extra=()
  while [ "$1" != "--" ]; do extra+=("$1"); shift; done
  shift
  local line
  "$@" 2>&1 | tee "$WORK/last.txt"
  line=$(grep -E '^bench train: ' "$WORK/last.txt" | tail -1)
  [ -z "$line" ] && return 1
  "$PYTHON" - "$kind" "$line" "${extra[@]}" >>"$RESULTS" <<'PY'
import json, re, sys
kind, line, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
m = re.search(r"([\d,]+) params, batch (\d+), (\d+) steps in ([\d.]+) s on (\S+): ([\d.]+) img/s", line)
r = {"bench": kind, "params": int(m[1].replace(",", "")), "batch": int(m[2]), "steps": int(m[3]),
     "seconds": float(m[4]), "device": m[5], "img_per_s": float(m[6])}
r.update(dict(kv.split("=", 1) for kv in extra))
print(json.dumps(r))
PY
}

# ---- phases ------------------------------------------------------------------------------------------------------
p_env() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "BIN=$BIN"; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  nvidia-smi | head -n 12
  nvidia-smi -q -d CLOCK,PERFORMANCE | grep -E 'SM|Memory|Performance State|Throttle|Active' | head -n 20
  "$PYTHON" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"
  "$PYTHON" -c "import diffusers; print('diffusers', diffusers.__version__, diffusers.__file__)"
  ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas\.so' | head
  "$BIN" --version
  "$BIN" kernels >"$LOGS/ptxas.txt" && echo "ptxas report: $(wc -l <"$LOGS/ptxas.txt") lines" \
    && grep -c 'sm_90' "$LOGS/ptxas.txt" | sed 's/^/sm_90 lines: /'
}
p_mnist() {
  local out=$WORK/mnist
  rm -rf "$out"
  echo "MNIST_DIR=$MNIST_DIR, ${MNIST_SECS}s"
  # SIGINT: the trainer finishes its step, saves the checkpoint (and the diffusers EMA folder) and exits 0.
  timeout -s INT -k 60 "$MNIST_SECS" "$BIN" train --dataset mnist --data-dir "$MNIST_DIR" --preset mnist \
    --steps 50000 --batch-size "$MNIST_BATCH" --lr 5e-4 --set train.warmup_steps=200 --set train.ema_decay=0.995 \
    --out "$out" --log-every 50 --checkpoint-every 100000 --device "$DEVICE" --quiet
  local rc=$?
  cp "$out/metrics.jsonl" "$OUT/mnist_metrics.jsonl" 2>/dev/null
  cp "$out/loss.png" "$OUT/mnist_loss.png" 2>/dev/null
  tail -n 1 "$out/metrics.jsonl" 2>/dev/null | sed 's/^/last: /'
  [ -f "$out/checkpoint.safetensors" ] || return 1
  [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || return "$rc"
}
p_selftest() {
  RAYON_NUM_THREADS=${SELFTEST_THREADS:-12} "$BIN" selftest --device cuda --shapes full \
    ${SELFTEST_FILTER:+--filter "$SELFTEST_FILTER"}
}
p_sanity() {
  local b=(bench train --preset tiny --batch-size 8 --warmup 1 --steps 2) rc=0
  sane() { echo "\$ $*"; "$@" 2>&1; echo "[exit $?]"; echo; }
  sane "$BIN" "${b[@]}" --device cuda
  sane "$BIN" "${b[@]}" --device auto
  sane "$BIN" "${b[@]}" --device cuda:1
  sane env CUDA_VISIBLE_DEVICES= "$BIN" "${b[@]}" --device auto
  sane env CUDA_VISIBLE_DEVICES= "$BIN" "${b[@]}" --device cuda
  sane env CUDA_VISIBLE_DEVICES= "$BIN" selftest --device cuda --filter linear
  # Without the pip libcublas on the path: linear/attention must fall back to the GEMM kernel, not crash.
  sane env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" "$BIN" selftest --device cuda --shapes full --filter linear
  return $rc
}
p_mnistsample() {
  local ck=$WORK/mnist/checkpoint.safetensors
  [ -f "$ck" ] || { echo "no MNIST checkpoint"; return 1; }
  local s e
  s=$(now)
  "$BIN" sample --checkpoint "$ck" --ema --num "$MNIST_NUM" --batch-size "$MNIST_NUM" $MNIST_SAMPLER --seed 1 \
    --grid "$OUT/mnist_samples.png" --device "$DEVICE" || return 1
  e=$(now)
  echo "$MNIST_NUM samples ($MNIST_SAMPLER): $(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.1f", b - a }') s (process wall time)"
  # The EMA weights as a diffusers folder in bf16 (13 MB), for re-sampling on the CPU later.
  "$PYTHON" - "$WORK/mnist/diffusers" "$WORK/mnist_ema_bf16" <<'PY' && tar cf "$OUT/mnist_ema_bf16.tar" -C "$WORK" mnist_ema_bf16
import os, shutil, sys, torch
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1:]
os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    if f.endswith(".safetensors"):
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(os.path.join(src, f)).items()}, os.path.join(dst, f))
    else:
        shutil.copy(os.path.join(src, f), dst)
print("bf16 EMA folder:", sorted(os.listdir(dst)))
PY
}
p_kernels() {
  "$BIN" bench kernels --device cuda ${BENCH_FILTER:+--filter "$BENCH_FILTER"}
}
p_train() {
  local p rc=0 flag
  for p in $PRECISIONS; do
    flag=("$PRECISION_FLAG" "$p")
    echo "-- precision $p"
    run_json ours_train precision="$p" preset="$TRAIN_PRESET" -- "$BIN" bench train --preset "$TRAIN_PRESET" --batch-size "$TRAIN_BATCH" --device "$DEVICE" \
      --warmup "$TRAIN_WARMUP" --steps "$TRAIN_STEPS" "${flag[@]}" || rc=1
  done
  # The same step without the CUDA graph (issue 13: graphs on vs off).
  for p in $GRAPHS_OFF_PRECISIONS; do
    echo "-- precision $p, --cuda-graphs off"
    run_json ours_train precision="$p" preset="$TRAIN_PRESET" graphs=off -- "$BIN" bench train --preset "$TRAIN_PRESET" \
      --batch-size "$TRAIN_BATCH" --device "$DEVICE" --warmup "$TRAIN_WARMUP" --steps "$TRAIN_STEPS" \
      "$PRECISION_FLAG" "$p" --cuda-graphs off || rc=1
  done
  return $rc
}
torch_modes() {
  local m rc=0
  for m in "$@"; do
    local w=$TRAIN_WARMUP
    [[ $m == *compile ]] && w=$COMPILE_WARMUP
    echo "-- torch $m"
    "$PYTHON" benches/train_torch.py --preset "$TRAIN_PRESET" --batch-size "$TRAIN_BATCH" --device "$DEVICE" --modes "$m" \
      --compile-backend "${COMPILE_BACKEND:-inductor}" \
      --warmup "$w" --steps "$TRAIN_STEPS" | tee -a "$RESULTS" || rc=1
  done
  return $rc
}
p_torch() { torch_modes $TORCH_MODES; }
p_compile() { torch_modes $COMPILE_MODES; }
p_sample() {
  local model=$WORK/${SAMPLE_PRESET}_random rc=0 b n d s e
  "$PYTHON" benches/sample_torch.py --preset "$SAMPLE_PRESET" --device cpu --save-model "$model" --save-only || return 1
  for b in $SAMPLE_BATCHES; do
    local -A secs=()
    for n in $SAMPLE_LO $SAMPLE_HI; do
      # The same weights with a T = n schedule: Algorithm 2 runs n U-Net evaluations, each exactly as at T = 1000.
      d=$WORK/${SAMPLE_PRESET}_T$n
      mkdir -p "$d"
      ln -sf "$model/config.json" "$model/diffusion_pytorch_model.safetensors" "$d/"
      printf '{"_class_name": "DDPMScheduler", "num_train_timesteps": %d, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "variance_type": "fixed_large", "clip_sample": true, "prediction_type": "epsilon"}\n' "$n" >"$d/scheduler_config.json"
      echo "-- ours: batch $b, $n steps"
      s=$(now)
      "$BIN" sample --checkpoint "$d" --num "$b" --batch-size "$b" --sampler ddpm --npz "$WORK/ours_$b.npz" \
        --device "$DEVICE" || { rc=1; continue 2; }
      e=$(now)
      secs[$n]=$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }')
      echo "   ${secs[$n]} s (process wall time)"
    done
    "$PYTHON" - "$b" "$SAMPLE_LO" "${secs[$SAMPLE_LO]}" "$SAMPLE_HI" "${secs[$SAMPLE_HI]}" <<'PY' | tee -a "$RESULTS"
import json, sys
b, lo, tlo, hi, thi = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
per = (thi - tlo) / (hi - lo)
t1000 = tlo + (1000 - lo) * per
if per <= 0:  # timing noise larger than the extra steps: the longer run alone, startup included (pessimistic)
    per, t1000 = thi / hi, 1000 * thi / hi
print(json.dumps({"bench": "ours_sample", "precision": "f32", "batch": b, "steps_lo": lo, "steps_hi": hi,
                  "t_lo_s": tlo, "t_hi_s": thi, "ms_per_step": round(1e3 * per, 3), "t1000_s": round(t1000, 3),
                  "img_per_s_1000": round(b / t1000, 4), "extrapolated": hi < 1000,
                  "note": "process wall time incl. startup and npz write, counted once via t_lo"}))
PY
  done
  return $rc
}
p_tsample() {
  "$PYTHON" benches/sample_torch.py --preset "$SAMPLE_PRESET" --device "$DEVICE" --batch-sizes "${SAMPLE_BATCHES// /,}" \
    --modes "${SAMPLE_TORCH_MODES// /,}" --steps-lo "$SAMPLE_LO" --steps-hi "$SAMPLE_HI" | tee -a "$RESULTS"
}

export -f now run_json torch_modes p_env p_mnist p_selftest p_sanity p_mnistsample p_kernels p_train p_torch p_compile \
  p_sample p_tsample
export ORIG_LD_LIBRARY_PATH LD_LIBRARY_PATH BIN
[ -n "${PYTHONPATH:-}" ] && export PYTHONPATH

# ---- the run -----------------------------------------------------------------------------------------------------
echo "gpu_session: budget ${BUDGET_S}s, OUT=$OUT, WORK=$WORK, BIN=$BIN"
phase env 60 5 p_env
MNIST_PID=
if want mnist && [ "$MNIST_PARALLEL" = 1 ] && [ "$(left)" -gt $((MNIST_SECS + 120)) ]; then
  # In the background from the start: it overlaps the untimed phases and is waited for before the timed ones.
  echo "== mnist (background, ${MNIST_SECS}s, at $(elapsed)s)"
  ( s=$(now); timeout -k 10 $((MNIST_SECS + 90)) bash -c "set -o pipefail; p_mnist" >"$LOGS/mnist.log" 2>&1
    rc=$?; st=ok; [ $rc -ne 0 ] && st="FAILED (exit $rc)"
    printf 'mnist\t%s (background)\t%s\n' "$st" "$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')" \
      >>"$PHASES_TSV" ) &
  MNIST_PID=$!
fi
phase selftest 240 30 p_selftest
phase sanity 90 20 p_sanity
if [ -n "$MNIST_PID" ]; then
  echo "== waiting for the MNIST run (at $(elapsed)s)"
  wait "$MNIST_PID"
  tail -n 3 "$LOGS/mnist.log" | sed 's/^/   /'
elif want mnist; then
  phase mnist $((MNIST_SECS + 90)) 60 p_mnist
fi
phase mnistsample 90 20 p_mnistsample
phase kernels 120 20 p_kernels
phase train 150 30 p_train
phase torch 150 30 p_torch
phase tsample 120 30 p_tsample
phase sample 200 30 p_sample
phase compile 300 60 p_compile
echo "== done at $(elapsed)s"
printf 'total (wall, setup included)\t\t%s\n' "$(elapsed)" >>"$PHASES_TSV"
cp "$PHASES_TSV" "$LOGS/phases.tsv"
"$PYTHON" scripts/gpu_summary.py "$WORK" "$RESULTS" >"$OUT/summary.md" 2>"$LOGS/summary.err" \
  || { echo "summary failed:"; cat "$LOGS/summary.err"; }
pack
cat "$OUT/summary.md"
ls -la "$OUT"
