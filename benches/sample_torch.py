"""PyTorch reference for ddpm-cuda's DDPM sampler: diffusers' DDPMPipeline (the paper's Algorithm 2 through
DDPMScheduler) with the cifar10 U-Net (diffusers UNet2DModel at the paper's config, random weights: speed only),
images/s at one or more batch sizes.

Timing: after a warm-up call, one call with --steps-lo and one with --steps-hi denoising steps (DDPMScheduler's
set_timesteps(N): the same U-Net call and update per step as the full 1,000-step chain); the difference gives the
time per step, and the 1,000-step time is extrapolated as t(lo) + (1000 - lo) · per-step (so the per-call
overhead - noise draw, final scaling - is counted once). --steps-hi 1000 --steps-lo 0 times the whole chain.

Modes:
    bf16           DDPMPipeline with the U-Net's weights in bf16 (the pipeline then runs everything in bf16)
    bf16-cl        the same + channels_last
    bf16-compile   bf16 + channels_last + pipe.unet = torch.compile(pipe.unet) (compiled in the warm-up call)
    f32            DDPMPipeline in float32 (PyTorch's TF32 defaults)

    python benches/sample_torch.py --device cuda --batch-sizes 256,1024 --modes bf16
    python benches/sample_torch.py --tiny                 # CPU smoke test at toy sizes
    python benches/sample_torch.py --save-model DIR       # also write the random model as a diffusers folder
                                                          # (config.json + safetensors) for `ddpm-cuda sample`

Prints one JSON line per (mode, batch) on stdout ({"bench": "torch_sample", ..., "img_per_s_1000": ...}); a failing
case prints a JSON line with "error" and the others still run (exit status 1).
"""
import argparse
import json
import os
import sys
import time
import traceback

import torch
from diffusers import DDPMPipeline, DDPMScheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_torch import PRESETS, build  # noqa: E402  (the same U-Net as the training benchmark)

MODES = ("bf16", "bf16-cl", "bf16-compile", "f32")


def scheduler(steps=1000):
    # Our presets' diffusion: linear β 1e-4 → 0.02, T = 1000, σ² = β (fixed_large), clipped x̂0.
    return DDPMScheduler(num_train_timesteps=steps, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         variance_type="fixed_large", clip_sample=True, prediction_type="epsilon")


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def make_pipe(mode, args, dev):
    torch.manual_seed(0)
    unet, _, _ = build(args.preset)
    unet.eval()
    unet.to(dev, dtype=torch.float32 if mode == "f32" else torch.bfloat16)
    if mode in ("bf16-cl", "bf16-compile"):
        unet.to(memory_format=torch.channels_last)
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler())
    pipe.set_progress_bar_config(disable=True)
    if mode == "bf16-compile":
        pipe.unet = torch.compile(pipe.unet, backend=args.compile_backend)
    return pipe


def timed(pipe, dev, batch, steps):
    sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        img = pipe(batch_size=batch, num_inference_steps=steps, output_type="pt").images
    sync(dev)
    secs = time.perf_counter() - t0
    if not torch.isfinite(img.float()).all():
        raise RuntimeError(f"non-finite images after {steps} steps")
    return secs


def run_case(pipe, mode, batch, args, dev):
    w0 = time.perf_counter()
    timed(pipe, dev, batch, args.warmup_steps)
    warmup_s = time.perf_counter() - w0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    lo, hi = args.steps_lo, args.steps_hi
    t_lo = timed(pipe, dev, batch, lo) if lo > 0 else 0.0
    t_hi = timed(pipe, dev, batch, hi)
    per_step = (t_hi - t_lo) / (hi - lo)
    t1000 = t_lo + (1000 - lo) * per_step
    if per_step <= 0:  # noise larger than the extra steps (toy sizes): the longer call alone
        per_step, t1000 = t_hi / hi, 1000 * t_hi / hi
    r = {
        "bench": "torch_sample", "mode": mode, "preset": args.preset, "batch": batch, "warmup_s": round(warmup_s, 3),
        "steps_lo": lo, "steps_hi": hi, "t_lo_s": round(t_lo, 4), "t_hi_s": round(t_hi, 4),
        "ms_per_step": round(1e3 * per_step, 3), "t1000_s": round(t1000, 3), "img_per_s_1000": round(batch / t1000, 4),
        "extrapolated": hi < 1000, "device": str(dev),
        "compile_backend": args.compile_backend if mode.endswith("compile") else None,
    }
    if dev.type == "cuda":
        r["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cifar10", choices=PRESETS)
    ap.add_argument("--batch-sizes", default="256,1024")
    ap.add_argument("--modes", default="bf16", help=f"comma-separated, from {','.join(MODES)}")
    ap.add_argument("--steps-lo", type=int, default=10)
    ap.add_argument("--steps-hi", type=int, default=60)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--save-model", metavar="DIR", help="write the (seed 0) U-Net as a diffusers model folder, f32")
    ap.add_argument("--save-only", action="store_true", help="with --save-model: write it and time nothing")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (--tiny uses aot_eager: the same tracing, no code generation)")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke test: preset tiny, batch 2, steps 1/3, CPU, every mode unless --modes")
    args = ap.parse_args()
    if args.tiny:
        args.preset, args.batch_sizes, args.device = "tiny", "2", "cpu"
        args.steps_lo, args.steps_hi, args.warmup_steps = 1, 3, 1
        if "--compile-backend" not in " ".join(sys.argv):
            args.compile_backend = "aot_eager"
        if "--modes" not in " ".join(sys.argv):
            args.modes = ",".join(MODES)
    if not 0 <= args.steps_lo < args.steps_hi <= 1000:
        ap.error("need 0 <= --steps-lo < --steps-hi <= 1000")
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}: expected {', '.join(MODES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.save_model:
        torch.manual_seed(0)
        unet, _, _ = build(args.preset)
        unet.save_pretrained(args.save_model, safe_serialization=True)
        print(f"wrote {args.save_model}", file=sys.stderr)
        if args.save_only:
            return
    import diffusers

    info = {"torch": torch.__version__, "diffusers": diffusers.__version__}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    failed = False
    for mode in modes:
        try:
            pipe = make_pipe(mode, args, dev)
        except Exception as e:
            traceback.print_exc()
            print(json.dumps({"bench": "torch_sample", "mode": mode, "error": f"{type(e).__name__}: {e}"[:500]}))
            failed = True
            continue
        for batch in [int(b) for b in args.batch_sizes.split(",") if b]:
            try:
                r = run_case(pipe, mode, batch, args, dev)
                print(f"torch sample [{mode}] batch {batch}: {r['ms_per_step']:.2f} ms/step, 1000 steps "
                      f"{'≈' if r['extrapolated'] else '='} {r['t1000_s']:.1f} s, {r['img_per_s_1000']:.2f} img/s",
                      file=sys.stderr)
            except Exception as e:
                traceback.print_exc()
                r = {"bench": "torch_sample", "mode": mode, "batch": batch, "error": f"{type(e).__name__}: {e}"[:500]}
                failed = True
            print(json.dumps({**r, **info}), flush=True)
        del pipe
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
