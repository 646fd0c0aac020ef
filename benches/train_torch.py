"""PyTorch reference for `ddpm-cuda bench train`: the same U-Net (diffusers UNet2DModel at our preset's config) and
the same step (q_sample, ε-prediction MSE, backward, grad-norm clip 1.0, Adam lr 2e-4, EMA 0.9999), timed after
warm-up, in one or more modes:

    f32            eager float32 (TF32 as PyTorch's defaults leave it: on for cuDNN convolutions, off for matmuls;
                   --tf32 on|off overrides both)
    bf16           bf16 autocast + channels_last (weights, Adam state and EMA stay float32)
    bf16-compile   the same + torch.compile(model) (default mode; compilation happens in the warm-up steps)

    python benches/train_torch.py --preset cifar10 --batch-size 128 --device cuda --modes f32,bf16,bf16-compile
    python benches/train_torch.py --tiny                      # CPU smoke test of every mode at toy sizes

Prints one JSON line per mode on stdout ({"bench": "torch_train", "mode": ..., "img_per_s": ...}) and a human line
on stderr. A mode that fails prints a JSON line with "error" and the others still run; the exit status is 1 if any
mode failed. Requires torch and diffusers (scripts/parity/requirements.txt pins them for the CPU).
"""
import argparse
import json
import sys
import time
import traceback

import torch
from diffusers import UNet2DModel

PRESETS = {
    # name: (image, channels, block_out_channels, attention level, layers_per_block, groups, dropout)
    # cifar10 is the paper's model: (128, 256, 256, 256), 2 res blocks, attention at 16×16 (level 1), dropout 0.1.
    "cifar10": (32, 3, [128, 256, 256, 256], 1, 2, 32, 0.1),
    "mnist": (28, 1, [64, 128, 128], 1, 2, 32, 0.1),
    "tiny": (28, 1, [32, 64], 1, 1, 8, 0.0),
}
MODES = ("f32", "bf16", "bf16-compile")


def build(preset):
    """diffusers' UNet2DModel at a preset's config (the DDPM family: norm_eps 1e-6, downsample_padding 0,
    flip_sin_to_cos False, freq_shift 1, one attention head of the block's width)."""
    size, ch, blocks, attn, layers, groups, dropout = PRESETS[preset]
    down = ["AttnDownBlock2D" if i == attn else "DownBlock2D" for i in range(len(blocks))]
    up = ["AttnUpBlock2D" if len(blocks) - 1 - i == attn else "UpBlock2D" for i in range(len(blocks))]
    model = UNet2DModel(
        sample_size=size, in_channels=ch, out_channels=ch, block_out_channels=blocks, layers_per_block=layers,
        down_block_types=down, up_block_types=up, norm_num_groups=groups, norm_eps=1e-6, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, attention_head_dim=None, dropout=dropout, act_fn="silu",
    )
    return model, size, ch


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run_mode(mode, args, dev):
    torch.manual_seed(0)
    model, size, ch = build(args.preset)
    model.to(dev).train()
    bf16 = mode.startswith("bf16")
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    if bf16:
        model.to(memory_format=torch.channels_last)
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    fused = dev.type == "cuda" and args.fused_adam
    opt = torch.optim.Adam(params, lr=2e-4, fused=fused or None)
    fwd = torch.compile(model, backend=args.compile_backend) if mode.endswith("compile") else model
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float().to(dev)
    # Several data batches in rotation, so the timed steps do not re-read one batch from cache.
    x0s = [torch.randn(args.batch_size, ch, size, size, device=dev).contiguous(memory_format=fmt) for _ in range(4)]

    def step(i):
        x0 = x0s[i % len(x0s)]
        t = torch.randint(0, 1000, (args.batch_size,), device=dev)
        noise = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            eps = fwd(x_t, t).sample
        loss = torch.nn.functional.mse_loss(eps.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.9999)
            torch._foreach_add_(ema, params, alpha=1 - 0.9999)
        return loss

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    w0 = time.perf_counter()
    for i in range(args.warmup):
        loss = step(i)
    sync(dev)
    warmup_s = time.perf_counter() - w0
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    sync(dev)
    secs = time.perf_counter() - start
    loss = float(loss.detach())
    if loss != loss:
        raise RuntimeError("loss is NaN")
    r = {
        "bench": "torch_train", "mode": mode, "preset": args.preset, "batch": args.batch_size, "warmup": args.warmup,
        "warmup_s": round(warmup_s, 3), "steps": args.steps, "seconds": round(secs, 4),
        "img_per_s": round(args.steps * args.batch_size / secs, 2), "steps_per_s": round(args.steps / secs, 4),
        "ms_per_step": round(1e3 * secs / args.steps, 3), "loss": round(loss, 5),
        "params": sum(p.numel() for p in params), "device": str(dev), "fused_adam": fused,
        "compile_backend": args.compile_backend if mode.endswith("compile") else None,
    }
    if dev.type == "cuda":
        r["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="mnist", choices=PRESETS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--modes", default="f32", help=f"comma-separated, from {','.join(MODES)}")
    ap.add_argument("--tf32", choices=["default", "on", "off"], default="default")
    ap.add_argument("--no-fused-adam", dest="fused_adam", action="store_false",
                    help="on CUDA, Adam(fused=True) is used unless this is given")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (--tiny uses aot_eager: the same tracing, no code generation)")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke test: preset tiny, batch 2, 1 warm-up + 2 steps, CPU, every mode unless --modes")
    args = ap.parse_args()
    if args.tiny:
        args.preset, args.batch_size, args.warmup, args.steps, args.device = "tiny", 2, 1, 2, "cpu"
        if "--compile-backend" not in " ".join(sys.argv):
            args.compile_backend = "aot_eager"
        if "--modes" not in " ".join(sys.argv):
            args.modes = ",".join(MODES)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}: expected {', '.join(MODES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32 != "default":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    dev = torch.device(args.device)
    import diffusers

    info = {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    failed = False
    for mode in modes:
        try:
            r = run_mode(mode, args, dev)
            print(f"torch train [{mode}]: {r['params']:,} params, batch {r['batch']}, {r['steps']} steps in "
                  f"{r['seconds']:.2f} s on {dev}: {r['img_per_s']:.2f} img/s, {r['steps_per_s']:.3f} steps/s "
                  f"(warm-up {r['warmup_s']:.1f} s)", file=sys.stderr)
        except Exception as e:  # one failing mode must not hide the others
            traceback.print_exc()
            r = {"bench": "torch_train", "mode": mode, "preset": args.preset, "batch": args.batch_size,
                 "error": f"{type(e).__name__}: {e}"[:500]}
            failed = True
        print(json.dumps({**r, **info}), flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
