//! CPU conv2d microbenchmark at the DDPM U-Net's shapes: `cargo bench --bench conv2d_cpu`.
//! Prints a markdown table: ms per call (median after warm-up) and GFLOP/s, forward and forward+backward
//! (dx, dW and db). benches/conv2d_torch.py measures the same shapes in PyTorch the same way.

use std::time::Instant;

use ddpm_cuda::ops::conv2d::{self, Conv2dParams};
use ddpm_cuda::Tensor;

const WARMUP: usize = 3;
const RUNS: usize = 21;

struct Case {
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    params: Conv2dParams,
}

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    // Cheap deterministic values in [-1, 1); the timing does not depend on them.
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    let v = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// Median wall time of `f` in milliseconds, after `WARMUP` untimed calls.
fn median_ms(mut f: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        f();
    }
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[RUNS / 2]
}

fn main() {
    let down = Conv2dParams::tf_same_down();
    let same = Conv2dParams::same(3);
    let cases = [
        Case { name: "128→128 3×3 32×32", n: 8, cin: 128, cout: 128, hw: 32, k: 3, params: same },
        Case { name: "256→256 3×3 16×16", n: 8, cin: 256, cout: 256, hw: 16, k: 3, params: same },
        Case { name: "256→256 3×3 8×8", n: 8, cin: 256, cout: 256, hw: 8, k: 3, params: same },
        Case { name: "3→128 3×3 32×32", n: 8, cin: 3, cout: 128, hw: 32, k: 3, params: same },
        Case { name: "128→128 3×3 s2 tf_same_down 32×32", n: 8, cin: 128, cout: 128, hw: 32, k: 3, params: down },
        Case {
            name: "256→128 1×1 32×32 (skip)",
            n: 8,
            cin: 256,
            cout: 128,
            hw: 32,
            k: 1,
            params: Conv2dParams::same(1),
        },
        Case { name: "128→128 3×3 32×32 batch 1", n: 1, cin: 128, cout: 128, hw: 32, k: 3, params: same },
    ];
    println!("rayon threads: {}", rayon::current_num_threads());
    println!("| shape (batch 8 unless noted) | fwd ms | fwd GFLOP/s | fwd+bwd ms | fwd+bwd GFLOP/s |");
    println!("|---|---:|---:|---:|---:|");
    for c in &cases {
        let x = tensor(&[c.n, c.cin, c.hw, c.hw], 1);
        let w = tensor(&[c.cout, c.cin, c.k, c.k], 2).scale(0.05).unwrap();
        let b = tensor(&[c.cout], 3);
        let y = conv2d::forward(&x, &w, Some(&b), c.params).unwrap();
        let gy = tensor(y.shape(), 4);
        let (ho, wo) = (y.shape()[2], y.shape()[3]);
        let gflop = 2.0 * (c.n * c.cout * ho * wo * c.cin * c.k * c.k) as f64 / 1e9;

        let fwd = median_ms(|| {
            std::hint::black_box(conv2d::forward(&x, &w, Some(&b), c.params).unwrap());
        });
        let fwd_bwd = median_ms(|| {
            std::hint::black_box(conv2d::forward(&x, &w, Some(&b), c.params).unwrap());
            std::hint::black_box(conv2d::backward(&x, &w, &gy, c.params, [true, true, true]).unwrap());
        });
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.1} |",
            c.name,
            fwd,
            gflop / (fwd / 1e3),
            fwd_bwd,
            3.0 * gflop / (fwd_bwd / 1e3)
        );
    }
}
