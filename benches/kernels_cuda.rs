//! CUDA kernel microbenchmarks at the cifar10 U-Net's shapes (batch 128): `cargo bench --bench kernels_cuda`.
//! Each op is timed through the library's public ops (so launch overhead and allocation from the stream-ordered
//! pool are included), median of RUNS after WARMUP, with a stream synchronisation around each run. Prints a
//! markdown table: time, achieved TFLOP/s (GEMM-shaped ops) or GB/s (memory-bound ops, counting each tensor read
//! or written once), and the percentage of the H200's measured peaks (790 TFLOP/s bf16 dense, 4.3 TB/s).
//! Without a usable GPU it prints "skipped: no CUDA device (reason)" and exits 0.
//! Optional argument: a substring to select ops (`cargo bench --bench kernels_cuda -- conv`).

use std::time::Instant;

use ddpm_cuda::backend::cuda::CudaBackend;
use ddpm_cuda::backend::cuda_gemm::GemmImpl;
use ddpm_cuda::ops::conv2d;
use ddpm_cuda::ops::diffusion_step::{q_sample, reverse_step, StepCoefs};
use ddpm_cuda::ops::elementwise::{self, BinaryOp};
use ddpm_cuda::ops::group_norm::{self, Layout};
use ddpm_cuda::ops::{attention, concat, dropout, linear, loss, silu, upsample};
use ddpm_cuda::optim::{clip_grad_norm, Adam, AdamConfig, Ema};
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{Device, Result, Tensor};

const WARMUP: usize = 3;
const RUNS: usize = 15;
const PEAK_TFLOPS: f64 = 790.0;
const PEAK_GBS: f64 = 4300.0;
const B: usize = 128;

/// What an op moves or computes per call.
enum Work {
    Flops(f64),
    Bytes(f64),
}

struct Bench<'a> {
    be: &'a CudaBackend,
    filter: Option<String>,
}

impl Bench<'_> {
    /// Time `f` (median ms) and print one table row.
    fn run(&self, op: &str, shape: &str, work: Work, mut f: impl FnMut() -> Result<()>) -> Result<()> {
        if self.filter.as_ref().is_some_and(|s| !op.contains(s.as_str())) {
            return Ok(());
        }
        for _ in 0..WARMUP {
            f()?;
        }
        self.be.synchronize()?;
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            f()?;
            self.be.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let s = times[RUNS / 2];
        let (rate, pct) = match work {
            Work::Flops(fl) => (format!("{:.2} TFLOP/s", fl / s / 1e12), 100.0 * fl / s / 1e12 / PEAK_TFLOPS),
            Work::Bytes(by) => (format!("{:.0} GB/s", by / s / 1e9), 100.0 * by / s / 1e9 / PEAK_GBS),
        };
        println!("| {op} | {shape} | {:.3} | {rate} | {pct:.1}% |", s * 1e3);
        Ok(())
    }
}

fn rand(shape: &[usize], seed: u64, d: &Device) -> Result<Tensor> {
    Philox::new(seed).normal_on(shape, d)
}

fn bytes(n: usize, tensors: usize) -> Work {
    Work::Bytes((n * tensors * 4) as f64)
}

fn conv_benches(b: &Bench, d: &Device) -> Result<()> {
    for (cin, cout, hw, k, p) in conv2d::check::bench_shapes() {
        let x = rand(&[B, cin, hw, hw], 1, d)?;
        let w = rand(&[cout, cin, k, k], 2, d)?;
        let bias = rand(&[cout], 3, d)?;
        let y = conv2d::forward(&x, &w, Some(&bias), p)?;
        let gy = rand(y.shape(), 4, d)?;
        let (ho, wo) = (y.shape()[2], y.shape()[3]);
        let flops = 2.0 * (B * cout * ho * wo * cin * k * k) as f64;
        let shape = format!("{cin}→{cout} {k}x{k}{} @{hw}²", if p.stride == 2 { " s2" } else { "" });
        b.run("conv2d fwd", &shape, Work::Flops(flops), || conv2d::forward(&x, &w, Some(&bias), p).map(drop))?;
        b.run("conv2d dgrad", &shape, Work::Flops(flops), || {
            conv2d::backward(&x, &w, &gy, p, [true, false, false]).map(drop)
        })?;
        b.run("conv2d wgrad", &shape, Work::Flops(flops), || {
            conv2d::backward(&x, &w, &gy, p, [false, true, false]).map(drop)
        })?;
    }
    Ok(())
}

fn norm_benches(b: &Bench, d: &Device) -> Result<()> {
    for &(c, hw) in group_norm::check::BENCH_SHAPES {
        let s = [B, c, hw, hw];
        let n = B * c * hw * hw;
        let (x, gy) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        let (gamma, beta) = (Tensor::ones(&[c], d)?, Tensor::zeros(&[c], d)?);
        let l = Layout::new(&s, &[c], &[c], 32)?;
        let shape = format!("{s:?}");
        b.run("group_norm_silu fwd", &shape, bytes(n, 2), || {
            group_norm::forward(&x, &gamma, &beta, l, 1e-6, true).map(drop)
        })?;
        let (_, stats) = group_norm::forward(&x, &gamma, &beta, l, 1e-6, true)?;
        b.run("group_norm_silu bwd", &shape, bytes(n, 3), || {
            group_norm::backward(&x, &gamma, &beta, &stats, &gy, l, true, &[true; 3]).map(drop)
        })?;
    }
    Ok(())
}

fn gemm_benches(b: &Bench, d: &Device) -> Result<()> {
    for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
        let name = if imp == GemmImpl::Kernel { "linear fwd (kernel)" } else { "linear fwd (cuBLAS)" };
        for &(fin, fout) in linear::check::BENCH_SHAPES {
            let (x, w, bias) = (rand(&[B, fin], 1, d)?, rand(&[fout, fin], 2, d)?, rand(&[fout], 3, d)?);
            let flops = 2.0 * (B * fin * fout) as f64;
            b.run(name, &format!("[{B}, {fin}]→{fout}"), Work::Flops(flops), || {
                linear::forward_with(&x, &w, Some(&bias), imp).map(drop)
            })?;
        }
    }
    let (c, t) = attention::check::BENCH_SHAPE;
    let s = [B, c, t];
    let (q, k, v, g) = (rand(&s, 1, d)?, rand(&s, 2, d)?, rand(&s, 3, d)?, rand(&s, 4, d)?);
    let flops = 2.0 * (2 * B * t * t * c) as f64;
    b.run("attention fwd", &format!("{s:?}"), Work::Flops(flops), || attention::forward(&q, &k, &v).map(drop))?;
    let (_, p) = attention::forward(&q, &k, &v)?;
    b.run("attention bwd", &format!("{s:?}"), Work::Flops(2.0 * flops), || {
        attention::backward(&q, &k, &v, &p, &g, [true; 3]).map(drop)
    })?;
    // The fused bf16 kernels (kernels/attention_flash.cu), the same useful FLOPs as the rows above (the backward
    // recomputes the scores: its kernels do more than the 2× counted).
    let fused = attention::check::FlashBench::new(d, B, c, t)?;
    b.run("attention fused bf16 fwd", &format!("{s:?}"), Work::Flops(flops), || fused.forward())?;
    b.run("attention fused bf16 bwd", &format!("{s:?}"), Work::Flops(2.0 * flops), || fused.backward())?;
    Ok(())
}

fn elementwise_benches(b: &Bench, d: &Device) -> Result<()> {
    let s = [B, 256, 16, 16];
    let n = B * 256 * 256;
    let (x, y, bias) = (rand(&s, 1, d)?, rand(&s, 2, d)?, rand(&[B, 256, 1, 1], 3, d)?);
    let shape = format!("{s:?}");
    b.run("add", &shape, bytes(n, 3), || elementwise::forward(BinaryOp::Add, &x, &y).map(drop))?;
    b.run("add bias [N,C,1,1]", &shape, bytes(n, 2), || elementwise::forward(BinaryOp::Add, &x, &bias).map(drop))?;
    b.run("bias grad (reduce)", &shape, bytes(n, 1), || elementwise::reduce_to_shape(&x, &[B, 256, 1, 1]).map(drop))?;
    b.run("silu fwd", &shape, bytes(n, 2), || silu::forward(&x).map(drop))?;
    b.run("silu bwd", &shape, bytes(n, 3), || silu::backward(&x, &y).map(drop))?;
    b.run("dropout fwd", &shape, bytes(n, 2), || dropout::forward(&x, 0.1, Philox::new(1)).map(drop))?;
    b.run("concat", &format!("{s:?}|{s:?}"), bytes(n, 4), || concat::forward(&[x.clone(), y.clone()]).map(drop))?;
    let small = rand(&[B, 256, 8, 8], 4, d)?;
    b.run("upsample2x fwd", "[128, 256, 8, 8]", bytes(n / 4, 5), || upsample::forward(&small).map(drop))?;
    b.run("upsample2x bwd", "[128, 256, 8, 8]", bytes(n / 4, 5), || upsample::backward(&x, small.shape()).map(drop))?;
    let img = [B, 3, 32, 32];
    let m = B * 3 * 1024;
    let (x0, e) = (rand(&img, 5, d)?, rand(&img, 6, d)?);
    let (ca, cb) = (vec![0.7; B], vec![0.71; B]);
    b.run("q_sample", &format!("{img:?}"), bytes(m, 3), || q_sample(&x0, &e, &ca, &cb).map(drop))?;
    let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.0, sigma: 0.2 };
    b.run("reverse_step", &format!("{img:?}"), bytes(m, 4), || reverse_step(&x0, &e, Some(&x0), c).map(drop))?;
    b.run("mse", &format!("{img:?}"), bytes(m, 2), || loss::forward(&x0, &e).map(drop))?;
    b.run("philox normal", &format!("{img:?}"), bytes(m, 1), || Philox::new(3).normal_on(&img, d).map(drop))?;
    Ok(())
}

fn optimizer_benches(b: &Bench, d: &Device) -> Result<()> {
    // The cifar10 U-Net's 35.7M parameters as 4 big tensors plus many small ones (the launch count matters).
    let mut shapes: Vec<Vec<usize>> = vec![vec![256, 512, 3, 3]; 12];
    shapes.extend(vec![vec![256, 256, 3, 3]; 8]);
    shapes.extend(vec![vec![256]; 160]);
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let mut params = shapes.iter().map(|s| rand(s, 1, d)).collect::<Result<Vec<_>>>()?;
    let mut grads = shapes.iter().map(|s| rand(s, 2, d)).collect::<Result<Vec<_>>>()?;
    let mut adam = Adam::new(AdamConfig::default(), &params)?;
    let mut ema = Ema::new(&params, 0.9999)?;
    let shape = format!("{} tensors, {:.1}M", shapes.len(), n as f64 / 1e6);
    // p, m, v, ema read and written, g read.
    b.run("adam+ema step", &shape, bytes(n, 9), || adam.step_with_ema(&mut params, &grads, 2e-4, Some(&mut ema)))?;
    b.run("clip_grad_norm", &shape, bytes(n, 1), || clip_grad_norm(&mut grads, 1e9).map(drop))?;
    Ok(())
}

fn main() {
    let device = match Device::parse("cuda") {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            return;
        }
    };
    let Device::Cuda(be) = &device else { unreachable!("parse(\"cuda\") gives a CUDA device") };
    // `cargo bench` passes "--bench"; any other argument selects ops by substring.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let b = Bench { be, filter };
    println!("CUDA kernels on {device}, batch {B}: median of {RUNS} after {WARMUP} warm-up calls");
    println!("| op | shape | ms | achieved | % of peak |\n|---|---|---|---|---|");
    let run = || -> Result<()> {
        conv_benches(&b, &device)?;
        norm_benches(&b, &device)?;
        gemm_benches(&b, &device)?;
        elementwise_benches(&b, &device)?;
        optimizer_benches(&b, &device)
    };
    if let Err(e) = run() {
        eprintln!("kernels_cuda: {e}");
        std::process::exit(1);
    }
}
