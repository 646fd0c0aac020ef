#!/usr/bin/env python3
"""Full sampling chains from diffusers' schedulers, for tests/sampling_chain.rs (tests/fixtures/parity/chain.safetensors).

    python -m venv .venv && .venv/bin/pip install -r scripts/parity/requirements.txt
    .venv/bin/python scripts/parity/make_chain_fixtures.py [--out tests/fixtures/parity]

Each chain starts from a saved x_T and runs every step of a diffusers scheduler with an analytic ε-model that
the Rust test computes the same way:

    ε̂(x, t) = k_t · x + 0.1 · tanh(x),   k_t = √(1 − ᾱ_t) / (ᾱ_t s² + 1 − ᾱ_t),  s = 0.5

(the optimal ε-predictor for data x0 ~ N(0, s²), plus a nonlinear term; k_t is saved per step so both sides use
the same numbers). The noise each step draws is saved, so the Rust side feeds the same noise to its own step.

Chains (key prefix):
  ddpm.<variance>.clip<0|1>   DDPMScheduler, T = 40 steps, β linear 1e-3 → 0.2, all 40 steps (t = 39 .. 0),
                              variance_type fixed_large / fixed_small, clip_sample on / off.
  ddim.eta<0|1>.clip<0|1>     DDIMScheduler, T = 1000, β linear 1e-4 → 0.02 (the paper's), 25 steps with
                              diffusers' default "leading" spacing (960, 920, ..., 0), set_alpha_to_one, η = 0 / 1.
Per chain: <p>.x_T [2,3,4,4], <p>.timesteps [K] (int64), <p>.k [K], <p>.noise [K,2,3,4,4] (the noise the step
adds; unused where the step adds none), <p>.x [K,2,3,4,4] (the sample after each step: x_{t-1}, the chain's
state), <p>.x0 [K,2,3,4,4] (the step's x̂0, clipped when the scheduler clips).
The schedulers run in float64 (their tables recomputed in float64, as make_fixtures.py's f64.* step fixtures),
so the reference is exact to float64 and only our float32 arithmetic differs.
"""

import argparse
import os

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)

SHAPE = (2, 3, 4, 4)
S = 0.5
F64 = torch.float64


def k_of(alphas_cumprod, t):
    a = alphas_cumprod[t]
    return torch.sqrt(1 - a) / (a * S * S + 1 - a)


def eps_model(x, k):
    return k * x + 0.1 * torch.tanh(x)


def run_chain(s, timesteps, step, seed):
    x = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)
    out = {"x_T": x.clone(), "timesteps": torch.tensor([int(t) for t in timesteps], dtype=torch.int64)}
    ks, noises, xs, x0s = [], [], [], []
    for i, t in enumerate(timesteps):
        t = int(t)
        k = k_of(s.alphas_cumprod, t)
        eps = eps_model(x, k)
        nseed = seed * 1000 + i
        noise = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(nseed), dtype=F64)
        r = step(s, eps, t, x, noise, nseed)
        x = r.prev_sample
        ks.append(k)
        noises.append(noise)
        xs.append(x.clone())
        x0s.append(r.pred_original_sample.clone())
    out["k"] = torch.stack(ks)
    out["noise"] = torch.stack(noises)
    out["x"] = torch.stack(xs)
    out["x0"] = torch.stack(x0s)
    return out


def ddpm_step(s, eps, t, x, noise, nseed):
    # DDPMScheduler.step draws its noise with randn_tensor(shape, generator, dtype): the same call as `noise`.
    return s.step(eps, t, x, generator=torch.Generator().manual_seed(nseed))


def ddim_step(eta):
    def step(s, eps, t, x, noise, nseed):
        return s.step(eps, t, x, eta=eta, variance_noise=noise)

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/parity")
    args = ap.parse_args()
    tensors = {}
    seed = 1
    for variance in ["fixed_large", "fixed_small"]:
        for clip in [True, False]:
            s = DDPMScheduler(
                num_train_timesteps=40,
                beta_start=1e-3,
                beta_end=0.2,
                beta_schedule="linear",
                variance_type=variance,
                clip_sample=clip,
                prediction_type="epsilon",
            )
            s.betas = torch.linspace(1e-3, 0.2, 40, dtype=F64)
            s.alphas = 1.0 - s.betas
            s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
            s.one = torch.tensor(1.0, dtype=F64)
            chain = run_chain(s, s.timesteps, ddpm_step, seed)
            seed += 1
            for k, v in chain.items():
                tensors[f"ddpm.{variance}.clip{int(clip)}.{k}"] = v
    for eta in [0, 1]:
        for clip in [True, False]:
            s = DDIMScheduler(
                num_train_timesteps=1000,
                beta_start=1e-4,
                beta_end=0.02,
                beta_schedule="linear",
                clip_sample=clip,
                set_alpha_to_one=True,
                steps_offset=0,
                prediction_type="epsilon",
            )
            s.betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
            s.alphas = 1.0 - s.betas
            s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
            s.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)
            s.set_timesteps(25)
            chain = run_chain(s, s.timesteps, ddim_step(float(eta)), seed)
            seed += 1
            for k, v in chain.items():
                tensors[f"ddim.eta{eta}.clip{int(clip)}.{k}"] = v
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "chain.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    for p in sorted({k.rsplit('.', 1)[0] for k in tensors}):
        print(p, tensors[f"{p}.timesteps"][:4].tolist(), "...", "final |x| max", tensors[f"{p}.x"][-1].abs().max().item())


if __name__ == "__main__":
    main()
