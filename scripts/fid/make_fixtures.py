#!/usr/bin/env python3
"""Writes the evaluation test fixtures (tests/fixtures/fid_*) with pytorch-fid's and torch-fidelity's own code.

Random Inception weights for the full network are ~95 MB, too big to commit. Instead both this script and the Rust
test (src/eval/inception.rs `synthetic_weights`) derive every weight from (tensor name, element index, seed) with
the same tiny generator: u = (splitmix64(fnv1a64(name) ^ seed + i) >> 40) / 2^24, an f32-exact uniform in [0, 1),
mapped to a per-kind range in f64 and rounded to f32. The script loads those weights into pytorch-fid's
InceptionV3 (through its own fid_inception_v3(), FIDInceptionA/C/E_1/E_2 blocks, with the weight download
replaced by the generated state dict), runs images of three sizes, and saves the inputs and the outputs.

Usage: python scripts/fid/make_fixtures.py [OUT_DIR]   (default tests/fixtures); versions in requirements.txt.
       python scripts/fid/make_fixtures.py --full-pth FILE  writes the whole synthetic state dict (~95 MB, legacy
       torch.save format) as a stand-in for pytorch-fid's weights file, for CLI smoke tests and benchmarks.
"""
import io
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_isc import isc_features_to_metric

SEED = 2015
M64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform24(name: str, n: int, seed: int = SEED) -> np.ndarray:
    """n f32-exact uniforms in [0, 1) for tensor `name` (f64)."""
    key = np.uint64(fnv1a64(name.encode()) ^ seed)
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + key + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def synthetic_value(name: str, shape) -> np.ndarray:
    """The weight the Rust side regenerates for `name` (same ranges as `synthetic_weights` there)."""
    n = int(np.prod(shape))
    u = uniform24(name, n)
    if name.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = (2 * u - 1) * np.sqrt(6.0 / fan_in)
    elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
        v = 0.5 + u
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean") or name == "fc.bias":
        v = (2 * u - 1) * 0.1
    elif name == "fc.weight":
        v = (2 * u - 1) * np.sqrt(3.0 / shape[1]) * 4.0
    else:
        raise ValueError(f"no synthetic rule for {name}")
    return v.astype(np.float32).reshape(shape)


def fid_skeleton():
    """fid_inception_v3()'s module tree without its weight download: just the names and shapes."""
    inception = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return inception


def synthetic_state_dict():
    sd = {}
    for name, t in fid_skeleton().state_dict().items():
        if name.endswith("num_batches_tracked"):
            sd[name] = t
        else:
            sd[name] = torch.from_numpy(synthetic_value(name, tuple(t.shape)))
    return sd


def inception_fixture(out_dir):
    sd = synthetic_state_dict()
    # pytorch-fid's own model, loaded through its own code path with our weights instead of the download.
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    model = pfi.InceptionV3([3]).eval()
    rng = np.random.default_rng(7)
    tensors = {}
    for side, count in [(32, 3), (64, 2), (299, 1)]:
        imgs = rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
        # pytorch-fid's ImagePathDataset: ToTensor() = HWC uint8 -> CHW float / 255.
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            pool3 = model(x)[0].squeeze(3).squeeze(2)
            logits_unbiased = pool3 @ sd["fc.weight"].T
        tensors[f"images_{side}"] = imgs
        tensors[f"pool3_{side}"] = pool3.numpy()
        tensors[f"logits_unbiased_{side}"] = logits_unbiased.numpy()
    save_file(tensors, os.path.join(out_dir, "fid_inception_synthetic.safetensors"))


def frechet_and_is_fixture(out_dir):
    rng = np.random.default_rng(11)
    d = 64
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    feats1 = (rng.standard_normal((300, d)) @ mix).astype(np.float32)
    feats2 = (rng.standard_normal((200, d)) @ (mix + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)) + 0.2).astype(
        np.float32
    )
    stats = []
    for f in (feats1, feats2):
        # pytorch-fid's calculate_activation_statistics on these activations.
        stats.append((np.mean(f, axis=0), np.cov(f, rowvar=False)))
    fid = calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    np.savez_compressed(os.path.join(out_dir, "fid_stats2.npz"), mu=stats[1][0], sigma=stats[1][1])

    logits = (rng.standard_normal((120, 1008)) * 3.0).astype(np.float32)
    isc = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=False)
    save_file(
        {
            "feats1": feats1,
            "feats2": feats2,
            "fid": np.array([fid], dtype=np.float64),
            "logits": logits,
            "is_mean_std": np.array([isc["inception_score_mean"], isc["inception_score_std"]], dtype=np.float64),
        },
        os.path.join(out_dir, "fid_frechet_is.safetensors"),
    )


def pth_fixture(out_dir):
    """A tiny state dict in both torch.save formats, values from the shared generator (tests the .pth reader)."""
    sd = {
        "Conv2d_1a_3x3.conv.weight": torch.from_numpy(synthetic_value("Conv2d_1a_3x3.conv.weight", (4, 3, 3, 3))),
        "Conv2d_1a_3x3.bn.running_var": torch.from_numpy(synthetic_value("Conv2d_1a_3x3.bn.running_var", (4,))),
        "Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(5, dtype=torch.long),
    }
    big = torch.from_numpy(synthetic_value("fc.weight", (6, 5)))
    sd["fc.weight"] = big[2:5]  # a view with a storage offset into a shared storage
    sd["fc.bias"] = big.t()[1]  # a strided view (stride 5) of the same storage
    sd = dict(sd)
    for name, zip_format in [("fid_tiny_zip.pth", True), ("fid_tiny_legacy.pth", False)]:
        buf = io.BytesIO()
        torch.save(sd, buf, _use_new_zipfile_serialization=zip_format)
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(buf.getvalue())


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--full-pth":
        torch.save(synthetic_state_dict(), sys.argv[2], _use_new_zipfile_serialization=False)
        print("wrote", sys.argv[2])
        return
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../tests/fixtures")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    pth_fixture(out_dir)
    frechet_and_is_fixture(out_dir)
    inception_fixture(out_dir)
    print("wrote fixtures to", os.path.abspath(out_dir))


if __name__ == "__main__":
    main()
