"""PyTorch-CPU reference for benches/conv2d_cpu.rs: the same shapes, the same timing method (3 untimed warm-up
calls, then the median of 21 timed calls), on 2 threads. Forward+backward computes dx, dW and db.

Run: /work/torch-venv/bin/python benches/conv2d_torch.py
"""

import statistics
import time

import torch
import torch.nn.functional as F

WARMUP, RUNS = 3, 21
torch.set_num_threads(2)


def median_ms(f):
    for _ in range(WARMUP):
        f()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def conv(x, w, b, stride, pad):
    # pad = (left, right, top, bottom). Symmetric padding goes to the conv itself; the DDPM downsample's
    # asymmetric one needs an explicit F.pad first, as PyTorch DDPM ports do.
    if pad[0] == pad[1] == pad[2] == pad[3]:
        return F.conv2d(x, w, b, stride=stride, padding=pad[0])
    return F.conv2d(F.pad(x, pad), w, b, stride=stride)


SAME3 = (1, (1, 1, 1, 1))
DOWN = (2, (0, 1, 0, 1))
CASES = [
    ("128→128 3×3 32×32", 8, 128, 128, 32, 3, SAME3),
    ("256→256 3×3 16×16", 8, 256, 256, 16, 3, SAME3),
    ("256→256 3×3 8×8", 8, 256, 256, 8, 3, SAME3),
    ("3→128 3×3 32×32", 8, 3, 128, 32, 3, SAME3),
    ("128→128 3×3 s2 tf_same_down 32×32", 8, 128, 128, 32, 3, DOWN),
    ("256→128 1×1 32×32 (skip)", 8, 256, 128, 32, 1, (1, (0, 0, 0, 0))),
    ("128→128 3×3 32×32 batch 1", 1, 128, 128, 32, 3, SAME3),
]


def main():
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn {torch.backends.mkldnn.is_available()}")
    print("| shape (batch 8 unless noted) | fwd ms | fwd GFLOP/s | fwd+bwd ms | fwd+bwd GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for name, n, cin, cout, hw, k, (stride, pad) in CASES:
        x = torch.rand(n, cin, hw, hw) * 2 - 1
        w = (torch.rand(cout, cin, k, k) * 2 - 1) * 0.05
        b = torch.rand(cout) * 2 - 1
        with torch.no_grad():
            y = conv(x, w, b, stride, pad)
        gy = torch.rand_like(y) * 2 - 1
        _, _, ho, wo = y.shape
        gflop = 2 * n * cout * ho * wo * cin * k * k / 1e9

        def fwd():
            with torch.no_grad():
                conv(x, w, b, stride, pad)

        xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, b))

        def fwd_bwd():
            xg.grad = wg.grad = bg.grad = None
            conv(xg, wg, bg, stride, pad).backward(gy)

        f_ms, fb_ms = median_ms(fwd), median_ms(fwd_bwd)
        print(f"| {name} | {f_ms:.2f} | {gflop / (f_ms / 1e3):.1f} | {fb_ms:.2f} | {3 * gflop / (fb_ms / 1e3):.1f} |")


if __name__ == "__main__":
    main()
