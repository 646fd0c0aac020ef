"""PyTorch reference for `ddpm-cuda bench train`: the same U-Net (diffusers UNet2DModel at our preset's config) and
the same step (q_sample, ε-prediction MSE, backward, grad-norm clip 1.0, Adam, EMA), timed after warm-up.

    python benches/train_torch.py --preset mnist --batch-size 32 [--device cpu|cuda] [--threads 2]

Prints one line: img/s and steps/s. Requires torch and diffusers (scripts/parity/requirements.txt pins them).
"""
import argparse
import time

import torch
from diffusers import UNet2DModel

PRESETS = {
    # name: (image, channels, block_out_channels, attention level, layers_per_block, groups, dropout)
    "cifar10": (32, 3, [128, 256, 256, 256], 1, 2, 32, 0.1),
    "mnist": (28, 1, [64, 128, 128], 1, 2, 32, 0.1),
    "tiny": (28, 1, [32, 64], 1, 1, 8, 0.0),
}


def build(preset):
    size, ch, blocks, attn, layers, groups, dropout = PRESETS[preset]
    down = ["AttnDownBlock2D" if i == attn else "DownBlock2D" for i in range(len(blocks))]
    up = ["AttnUpBlock2D" if len(blocks) - 1 - i == attn else "UpBlock2D" for i in range(len(blocks))]
    model = UNet2DModel(
        sample_size=size, in_channels=ch, out_channels=ch, block_out_channels=blocks, layers_per_block=layers,
        down_block_types=down, up_block_types=up, norm_num_groups=groups, norm_eps=1e-6, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, attention_head_dim=None, dropout=dropout, act_fn="silu",
    )
    return model, size, ch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mnist", choices=PRESETS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model, size, ch = build(args.preset)
    model.to(dev).train()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float().to(dev)
    x0 = torch.randn(args.batch_size, ch, size, size, device=dev)

    def step():
        t = torch.randint(0, 1000, (args.batch_size,), device=dev)
        noise = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(x_t, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            params = list(model.parameters())
            torch._foreach_mul_(ema, 0.9999)
            torch._foreach_add_(ema, params, alpha=1 - 0.9999)

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    n = sum(p.numel() for p in model.parameters())
    print(
        f"torch train: {n:,} params, batch {args.batch_size}, {args.steps} steps in {secs:.2f} s on {args.device}: "
        f"{args.steps * args.batch_size / secs:.2f} img/s, {args.steps / secs:.3f} steps/s (torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
