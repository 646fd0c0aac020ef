#!/usr/bin/env python3
"""Generate the reference-parity fixtures in tests/fixtures/parity/ from diffusers + PyTorch (CPU).

    python -m venv .venv && .venv/bin/pip install -r scripts/parity/requirements.txt
    .venv/bin/python scripts/parity/make_fixtures.py [--out tests/fixtures/parity]

Per U-Net config (a folder named after it):
  config.json, diffusion_pytorch_model.safetensors  UNet2DModel.save_pretrained of random-init weights, every
                                                    parameter perturbed (so "zero-init" layers are not trivially
                                                    right); `pad0_oldnames` is re-saved with the pre-0.14
                                                    attention names query/key/value/proj_attn.
  io.safetensors   x [B,C,H,W], t [B] (int64), eps = model(x, t);
                   noise, grad.<name> = dL/dparam of L_simple = mse(model(x, t), noise);
                   adam.x_t [K,B,C,H,W], adam.t [K,B], adam.noise [K,B,C,H,W], adam.losses [K] (float64): the losses
                   of K = 10 torch.optim.Adam(lr=1e-3) steps, each on its own fixed (x_t, t, noise), loss before
                   the step.
  x.npy, t.npy     the same x and t as .npy (for the `ddpm-cuda eps` CLI test).
scheduler.safetensors   DDPMScheduler(linear 1e-4..0.02, 1000): betas, alphas_cumprod (diffusers' float32), and
                   step() results for variance_type fixed_large/fixed_small x clip_sample on/off at several t, both
                   with diffusers' float32 tables (native) and with the tables recomputed in float64 (f64.*).
cifar10_names_shapes.txt   name and shape of every parameter of UNet2DModel at google/ddpm-cifar10-32's config.
cifar10_config.json        that config (as listed in ../shared/notes/ddpm-reference.md).

Everything is seeded; the outputs are deterministic for the pinned versions on CPU.
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)

COMMON = dict(
    act_fn="silu",
    attention_head_dim=None,
    center_input_sample=False,
    flip_sin_to_cos=False,
    freq_shift=1,
    time_embedding_type="positional",
    mid_block_scale_factor=1,
    dropout=0.0,
)

# Small DDPM-family configs: channel and group counts, attention at one level, downsample_padding 0 and 1.
CONFIGS = {
    # Attention at the lower level, paper padding, GroupNorm eps 1e-6; saved with the old attention names.
    "pad0_oldnames": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=[16, 32],
        down_block_types=["DownBlock2D", "AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        norm_num_groups=8,
        norm_eps=1e-6,
        downsample_padding=0,
    ),
    # Attention at the top level, symmetric padding, 16 groups, eps 1e-5, three levels, two blocks per level.
    "pad1_attn_top": dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=[16, 16, 32],
        down_block_types=["AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
        layers_per_block=2,
        norm_num_groups=16,
        norm_eps=1e-5,
        downsample_padding=1,
    ),
    # The CIFAR-10 layout shrunk: four levels (1,2,2,2), attention at the second, paper padding.
    "cifar_like": dict(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=[8, 16, 16, 16],
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        norm_num_groups=8,
        norm_eps=1e-6,
        downsample_padding=0,
    ),
}

# google/ddpm-cifar10-32's UNet2DModel config (reference notes).
CIFAR10 = dict(
    COMMON,
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=[128, 256, 256, 256],
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=2,
    norm_num_groups=32,
    norm_eps=1e-6,
    downsample_padding=0,
)

BATCH = 3
TIMESTEPS = [0, 417, 999]
ADAM_STEPS = 10
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def perturbed_model(cfg, seed):
    torch.manual_seed(seed)
    model = UNet2DModel(**cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def to_old_names(folder):
    path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    sd = load_file(path)
    out = {}
    for name, t in sd.items():
        for new, old in OLD_NAMES.items():
            if ".attentions." in name and f".{new}." in name:
                name = name.replace(f".{new}.", f".{old}.")
        out[name] = t.contiguous()
    save_file(out, path, metadata={"format": "pt"})


def make_unet_fixture(out, name, cfg, seed):
    cfg = dict(COMMON, **cfg)
    folder = os.path.join(out, name)
    shutil.rmtree(folder, ignore_errors=True)
    model = perturbed_model(cfg, seed)
    model.save_pretrained(folder, safe_serialization=True)
    if name.endswith("oldnames"):
        to_old_names(folder)
        # diffusers itself must load the old names back to the same weights.
        again = UNet2DModel.from_pretrained(folder)
        for (n, a), b in zip(model.state_dict().items(), again.state_dict().values()):
            assert torch.equal(a, b), n

    g = torch.Generator().manual_seed(seed + 2)
    shape = (BATCH, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
    x = torch.randn(shape, generator=g)
    t = torch.tensor(TIMESTEPS, dtype=torch.int64)
    with torch.no_grad():
        eps = model(x, t).sample

    # Gradients of L_simple at (x_t = x, t, noise).
    noise = torch.randn(shape, generator=g)
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x, t).sample, noise)
    loss.backward()
    tensors = {"x": x, "t": t, "eps": eps, "noise": noise, "loss": loss.detach().double().reshape(1)}
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad.detach().clone()

    # Adam on fixed inputs, one (x_t, t, noise) per step.
    xs = torch.randn((ADAM_STEPS,) + shape, generator=g)
    ts = torch.randint(0, 1000, (ADAM_STEPS, BATCH), generator=g, dtype=torch.int64)
    ns = torch.randn((ADAM_STEPS,) + shape, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()  # dropout is 0: train mode changes nothing, but it is what training runs under
    for k in range(ADAM_STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xs[k], ts[k]).sample, ns[k])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tensors.update({"adam.x_t": xs, "adam.t": ts, "adam.noise": ns, "adam.losses": torch.tensor(losses, dtype=torch.float64)})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "io.safetensors"))
    np.save(os.path.join(folder, "x.npy"), x.numpy())
    np.save(os.path.join(folder, "t.npy"), t.numpy())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params} parameters, loss {tensors['loss'].item():.6f}, adam {losses[0]:.5f} -> {losses[-1]:.5f}")


def f64_tables(s):
    """Recompute the scheduler's tables in float64 so diffusers' own step() runs in float64."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    s.betas = betas
    s.alphas = 1.0 - betas
    s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
    s.one = torch.tensor(1.0, dtype=torch.float64)


def make_scheduler_fixture(out):
    shape = (2, 3, 4, 4)
    tensors = {}
    g = torch.Generator().manual_seed(7)
    for prefix, dtype in [("", torch.float32), ("f64.", torch.float64)]:
        for variance in ["fixed_large", "fixed_small"]:
            for clip in [True, False]:
                s = DDPMScheduler(
                    num_train_timesteps=1000,
                    beta_start=1e-4,
                    beta_end=0.02,
                    beta_schedule="linear",
                    variance_type=variance,
                    clip_sample=clip,
                    prediction_type="epsilon",
                )
                if dtype == torch.float64:
                    f64_tables(s)
                elif not tensors:
                    tensors["betas"] = s.betas.clone()
                    tensors["alphas_cumprod"] = s.alphas_cumprod.clone()
                for t in [999, 500, 10, 1, 0]:
                    key = f"{prefix}{variance}.clip{int(clip)}.t{t}"
                    # Samples of magnitude up to ~3 so clipping x̂0 matters at every t.
                    sample = (3 * torch.randn(shape, generator=g)).to(dtype)
                    eps = torch.randn(shape, generator=g).to(dtype)
                    seed = 1000 + t
                    noise = randn_tensor(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
                    r = s.step(eps, t, sample, generator=torch.Generator().manual_seed(seed))
                    tensors[f"{key}.sample"] = sample
                    tensors[f"{key}.eps"] = eps
                    tensors[f"{key}.noise"] = noise
                    tensors[f"{key}.prev"] = r.prev_sample
                    tensors[f"{key}.x0"] = r.pred_original_sample
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "scheduler.safetensors"))
    print(f"scheduler: {len(tensors)} tensors")


def make_cifar10_listing(out):
    torch.manual_seed(0)
    model = UNet2DModel(**CIFAR10)
    lines = [f"{n}\t{','.join(map(str, p.shape))}" for n, p in model.state_dict().items()]
    with open(os.path.join(out, "cifar10_names_shapes.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "cifar10_config.json"), "w") as f:
        json.dump(dict(CIFAR10, _class_name="UNet2DModel"), f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"cifar10: {len(lines)} tensors, {sum(p.numel() for p in model.parameters())} parameters")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "parity"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        make_unet_fixture(args.out, name, cfg, seed=100 * (i + 1))
    make_scheduler_fixture(args.out)
    make_cifar10_listing(args.out)


if __name__ == "__main__":
    main()
