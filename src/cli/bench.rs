//! `ddpm-cuda bench`: `bench train` (optimizer steps per second, end to end) and `bench kernels` (each op's kernels
//! at the cifar10 U-Net's shapes, the rows its `check.rs` names).

use std::process::ExitCode;

use ddpm_cuda::backend::graph::GraphMode;
use ddpm_cuda::bench::kernels;
use ddpm_cuda::config::Precision;
use ddpm_cuda::{Device, Result};

use super::{group_thousands, positive_usize, ModelArgs, DEVICE_HELP};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to time: `train` (whole optimizer steps) or `kernels` (each op's kernels, a markdown table).
    #[arg(value_parser = ["train", "kernels"])]
    pub what: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images per step (default: the config's train.batch_size; 128 for `kernels`).
    #[arg(long, value_parser = positive_usize)]
    pub batch_size: Option<usize>,
    /// Untimed steps (calls, for `kernels`) first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps (calls, for `kernels`: the median is reported), at least 1.
    #[arg(long, default_value_t = 10, value_parser = positive_usize)]
    pub steps: usize,
    /// `kernels`: only the rows whose op contains this text (e.g. `conv2d`).
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long, default_value = "auto", help = DEVICE_HELP)]
    pub device: String,
    /// Activation dtype: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16 (mixed precision, CUDA only).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: Precision,
    /// `train` on one CUDA device: capture the step as a CUDA graph after the first step and replay it (auto, on),
    /// or launch plainly (off); see `train --cuda-graphs`.
    #[arg(long, value_enum, default_value = "auto")]
    pub cuda_graphs: GraphMode,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let BenchArgs { what, model, batch_size, warmup, steps, filter, device, precision, cuda_graphs } = args;
    if what == "kernels" {
        let device = Device::parse(&device)?;
        let opts = kernels::Options { batch: batch_size.unwrap_or(128), warmup, runs: steps, filter };
        println!("kernels on {device}, batch {}: median of {} calls after {} warm-up calls", opts.batch, steps, warmup);
        println!("{}", kernels::TABLE_HEADER);
        kernels::run(&device, &opts, |m| println!("{}", m.markdown()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cfg = model.load()?;
    cfg.train.batch_size = batch_size.unwrap_or(cfg.train.batch_size);
    cfg.train.precision = precision;
    let device = Device::parse(&device)?;
    let dtype = precision.resolve(&device)?;
    let r = ddpm_cuda::bench::train(cfg, &device, warmup, steps, cuda_graphs)?;
    println!(
        "bench train: {} params, batch {}, {dtype}, {} steps in {:.2} s on {device}: {:.2} img/s, {:.3} steps/s",
        group_thousands(r.params),
        r.batch_size,
        r.steps,
        r.seconds,
        r.img_per_s,
        r.steps_per_s
    );
    Ok(ExitCode::SUCCESS)
}
