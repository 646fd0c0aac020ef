//! Kernel microbenchmarks (`ddpm-cuda bench kernels`, `cargo bench --bench kernels_cuda`). Each op's `check.rs`
//! names its benchmark rows beside its selftest cases (`benches(&mut Vec<Row>, batch)`), collected through the ops
//! registry (`ops::BENCHES`); the rows of no op (the Philox draw, the optimizer) are at the end of this file, which
//! otherwise only times them.
//!
//! A row is timed through the library's public functions (so launch overhead and allocation from the stream-ordered
//! pool are included): median of `runs` after `warmup` calls, with a stream synchronisation around each run. Its
//! inputs are made just before it runs and dropped after, so the whole table never holds more than one row's
//! tensors. The rate is achieved TFLOP/s (GEMM-shaped ops) or GB/s (memory-bound ops, each tensor read or written
//! once), and the share of the H200's peaks (790 TFLOP/s bf16 dense, 4.3 TB/s).

use std::time::Instant;

use crate::optim::{clip_grad_norm, Adam, AdamConfig, Ema};
use crate::rng::Philox;
use crate::{Device, Result, Tensor};

/// The H200's dense bf16 tensor-core peak, TFLOP/s.
pub const PEAK_TFLOPS: f64 = 790.0;
/// The H200's HBM3e bandwidth, GB/s.
pub const PEAK_GBS: f64 = 4300.0;

/// What a row moves or computes per call.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
}

impl Work {
    /// `tensors` f32 tensors of `n` elements each, read or written once.
    pub fn f32s(n: usize, tensors: usize) -> Work {
        Work::Bytes((n * tensors * 4) as f64)
    }
}

/// The call a row times, made by its setup (which owns the inputs).
pub type Timed = Box<dyn FnMut() -> Result<()>>;
type Setup = Box<dyn Fn(&Device) -> Result<Timed>>;

/// One benchmark row: what it is, how much work one call does, and how to make its inputs.
pub struct Row {
    pub op: String,
    pub shape: String,
    pub work: Work,
    /// Times a CUDA-only code path (a kernel with no CPU twin): the CPU unit test skips it.
    pub cuda_only: bool,
    setup: Setup,
}

impl Row {
    /// Mark a row whose setup needs a CUDA device.
    pub fn cuda_only(mut self) -> Row {
        self.cuda_only = true;
        self
    }
}

/// A row whose `setup` makes the inputs on the device and returns the call to time.
pub fn row(
    op: impl Into<String>,
    shape: impl Into<String>,
    work: Work,
    setup: impl Fn(&Device) -> Result<Timed> + 'static,
) -> Row {
    Row { op: op.into(), shape: shape.into(), work, cuda_only: false, setup: Box::new(setup) }
}

/// Standard-normal values of `shape` on `d` (the timing does not depend on them).
pub fn rand(shape: &[usize], seed: u64, d: &Device) -> Result<Tensor> {
    Philox::new(seed).normal_on(shape, d)
}

/// Every row at batch size `batch`: the ops' (registry order), then the Philox draw's and the optimizer's.
pub fn rows(batch: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for benches in crate::ops::BENCHES {
        benches(&mut rows, batch);
    }
    rows_of_no_op(&mut rows, batch);
    rows
}

/// One timed row.
#[derive(Clone, Debug)]
pub struct Measured {
    pub op: String,
    pub shape: String,
    /// Median milliseconds per call.
    pub ms: f64,
    /// "12.3 TFLOP/s" or "456 GB/s".
    pub rate: String,
    /// Percent of the peak for this kind of work.
    pub percent_of_peak: f64,
}

impl Measured {
    /// One markdown table row (see [`TABLE_HEADER`]).
    pub fn markdown(&self) -> String {
        format!("| {} | {} | {:.3} | {} | {:.1}% |", self.op, self.shape, self.ms, self.rate, self.percent_of_peak)
    }
}

/// The header of the markdown table that [`Measured::markdown`] rows continue.
pub const TABLE_HEADER: &str = "| op | shape | ms | achieved | % of peak |\n|---|---|---|---|---|";

/// How to time: calls before timing, timed calls (the median is kept), and which rows (ops containing `filter`).
#[derive(Clone, Debug)]
pub struct Options {
    pub batch: usize,
    pub warmup: usize,
    pub runs: usize,
    pub filter: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch: 128, warmup: 3, runs: 15, filter: None }
    }
}

/// Time every selected row on `device`, handing each result to `each` as it is measured.
pub fn run(device: &Device, opts: &Options, mut each: impl FnMut(&Measured)) -> Result<Vec<Measured>> {
    let runs = opts.runs.max(1);
    let mut out = Vec::new();
    for r in rows(opts.batch) {
        if opts.filter.as_ref().is_some_and(|f| !r.op.contains(f.as_str())) {
            continue;
        }
        let mut call = (r.setup)(device)?;
        for _ in 0..opts.warmup {
            call()?;
        }
        sync(device)?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            call()?;
            sync(device)?;
            times.push(t.elapsed().as_secs_f64());
        }
        drop(call);
        times.sort_by(f64::total_cmp);
        let s = times[runs / 2];
        let (rate, percent_of_peak) = match r.work {
            Work::Flops(f) => (format!("{:.2} TFLOP/s", f / s / 1e12), 100.0 * f / s / 1e12 / PEAK_TFLOPS),
            Work::Bytes(b) => (format!("{:.0} GB/s", b / s / 1e9), 100.0 * b / s / 1e9 / PEAK_GBS),
        };
        let m = Measured { op: r.op, shape: r.shape, ms: s * 1e3, rate, percent_of_peak };
        each(&m);
        out.push(m);
    }
    Ok(out)
}

pub(crate) fn sync(device: &Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(b) => b.synchronize(),
    }
}

/// The Philox normal draw of a batch of noise, and one optimizer step (Adam + EMA, gradient-norm clipping) over about
/// as many parameters and tensors as the cifar10 U-Net has (35.7M in 328 tensors; here 35.5M in 336, since the
/// launch count matters as much as the bytes).
fn rows_of_no_op(rows: &mut Vec<Row>, batch: usize) {
    let img = [batch, 3, 32, 32];
    rows.push(row("philox normal", format!("{img:?}"), Work::f32s(batch * 3 * 1024, 1), move |d| {
        let d = d.clone();
        Ok(Box::new(move || Philox::new(3).normal_on(&img, &d).map(drop)))
    }));
    let mut shapes: Vec<Vec<usize>> = vec![vec![256, 512, 3, 3]; 24];
    shapes.extend(vec![vec![256, 256, 3, 3]; 12]);
    shapes.extend(vec![vec![256]; 300]);
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let shape = format!("{} tensors, {:.1}M", shapes.len(), n as f64 / 1e6);
    let tensors = move |seed: u64, d: &Device| shapes.iter().map(|s| rand(s, seed, d)).collect::<Result<Vec<_>>>();
    let tensors = std::rc::Rc::new(tensors);
    let t = tensors.clone();
    // p, m, v and the EMA read and written, g read.
    rows.push(row("adam+ema step", shape.clone(), Work::f32s(n, 9), move |d| {
        let (mut params, grads) = (t(1, d)?, t(2, d)?);
        let mut adam = Adam::new(AdamConfig::default(), &params)?;
        let mut ema = Ema::new(&params, 0.9999)?;
        Ok(Box::new(move || adam.step_with_ema(&mut params, &grads, 2e-4, Some(&mut ema))))
    }));
    rows.push(row("clip_grad_norm", shape, Work::f32s(n, 1), move |d| {
        let mut grads = tensors(2, d)?;
        Ok(Box::new(move || clip_grad_norm(&mut grads, 1e9).map(drop)))
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_sets_up_and_runs_on_the_cpu_at_batch_one() {
        // The rows are written for the GPU, but every op has a CPU reference: running each once at batch 1
        // proves the shapes are consistent (a row whose setup or call fails would fail on the GPU too).
        let rows = rows(1);
        let ops: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.op.as_str()).collect();
        for want in ["conv2d fwd", "conv2d wgrad", "group_norm_silu bwd", "attention fwd", "adam+ema step", "mse"] {
            assert!(ops.contains(want), "no bench row {want}: {ops:?}");
        }
        for r in &rows {
            if r.cuda_only {
                continue;
            }
            let mut call = (r.setup)(&Device::Cpu).unwrap_or_else(|e| panic!("{} {}: setup: {e}", r.op, r.shape));
            call().unwrap_or_else(|e| panic!("{} {}: {e}", r.op, r.shape));
            match r.work {
                Work::Flops(f) | Work::Bytes(f) => assert!(f > 0.0, "{} {}: no work counted", r.op, r.shape),
            }
        }
    }
}
