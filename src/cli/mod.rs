//! The `ddpm-cuda` command line: each subcommand's arguments and driver in its own file; `main.rs` only parses
//! and dispatches.

pub mod bench;
pub mod eps;
pub mod eval;
pub mod forward;
pub mod info;
pub mod sample;
pub mod selftest;
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ddpm_cuda::config::Config;
use ddpm_cuda::nn::unet::UNet;
use ddpm_cuda::nn::ParamStore;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{diffusers, Device, Error, Result};

#[derive(Parser)]
#[command(name = "ddpm-cuda", version, about = "Denoising Diffusion Probabilistic Models on CPU and CUDA")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a U-Net on L_simple.
    Train(train::TrainArgs),
    /// Generate images from a checkpoint: ours (file or run folder) or a diffusers UNet2DModel (folder, or
    /// .safetensors with config.json beside it or given by --config).
    Sample(sample::SampleArgs),
    /// ε̂ = model(x_t, t) for a batch given as .npy (x float32 NCHW, t int64/int32): for parity checks.
    Eps(eps::EpsArgs),
    /// FID of samples against reference stats, a samples npz or a dataset, and their Inception Score.
    Fid(eval::FidArgs),
    /// Write pytorch-fid reference stats (mu, sigma) for a dataset or an images npz.
    FidStats(eval::FidStatsArgs),
    /// The variational bound in bits/dim (paper Table 2's NLL) of a checkpoint on a test set.
    Nll(eval::NllArgs),
    /// Each sample's distance to its nearest training image, with the nearest pairs drawn side by side.
    Memorization(eval::MemorizationArgs),
    /// Draw the forward process q(x_t | x_0) for a few images at chosen t (one row per image).
    Forward(forward::ForwardArgs),
    /// End-to-end benchmarks: `bench train` times optimizer steps (img/s) after warm-up on random images.
    Bench(bench::BenchArgs),
    /// Print a preset's (or config file's) U-Net: its parameters, shapes and the total count.
    Info(info::InfoArgs),
    /// Print the compiled CUDA kernels' ptxas report (registers, spills, per kernel and arch).
    Kernels,
    /// Check every kernel against the CPU reference on a device.
    Selftest(selftest::SelftestArgs),
}

/// `--preset`: one of the configs/ presets, named in the error otherwise.
pub(crate) fn parse_preset(s: &str) -> std::result::Result<String, String> {
    Config::preset(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

/// A count that must be at least 1.
pub(crate) fn positive_u64(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

pub(crate) fn positive_usize(s: &str) -> std::result::Result<usize, String> {
    positive_u64(s).map(|v| v as usize)
}

/// A learning rate: finite and > 0.
pub(crate) fn positive_f32(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number > 0")),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// DDIM's η, in [0, 1].
pub(crate) fn unit_f64(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside [0, 1]")),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// `forward --num`: 1 to 256 images.
pub(crate) fn forward_num(s: &str) -> std::result::Result<usize, String> {
    match positive_usize(s)? {
        v if v > 256 => Err(format!("{v} rows is more than the figure takes (at most 256)")),
        v => Ok(v),
    }
}

pub(crate) const DEVICE_HELP: &str = "auto (CUDA device 0 if present, else the CPU), cpu, cuda or cuda:N";

#[derive(clap::Args)]
pub(crate) struct ModelArgs {
    /// A preset from configs/: tiny, mnist or cifar10 [default: tiny].
    #[arg(long, value_parser = parse_preset)]
    pub(crate) preset: Option<String>,
    /// A TOML config file (a preset's layout) instead of a preset.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Override a config value: --set model.ch=64 --set train.lr=1e-4 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub(crate) sets: Vec<String>,
}

impl ModelArgs {
    pub(crate) fn load(&self) -> Result<Config> {
        let cfg = match (&self.config, &self.preset) {
            (Some(_), Some(_)) => return Err(Error::msg("give --preset or --config, not both")),
            (Some(path), None) => Config::from_file(path)?,
            (None, preset) => Config::preset(preset.as_deref().unwrap_or("tiny"))?,
        };
        cfg.with_overrides(&self.sets)
    }

    /// The flags given, as typed (for messages); empty when none was.
    pub(crate) fn given(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = &self.preset {
            v.push(format!("--preset {p}"));
        }
        if let Some(c) = &self.config {
            v.push(format!("--config {}", c.display()));
        }
        v.extend(self.sets.iter().map(|s| format!("--set {s}")));
        v
    }
}

/// The U-Net a loaded model describes, with its weights on `device`.
pub(crate) fn build(loaded: &diffusers::Loaded, device: &Device) -> Result<(UNet, ParamStore)> {
    let mut params = ParamStore::new();
    let unet = UNet::new(&loaded.model, &mut params, &mut Philox::new(0))?;
    params.set_tensors(loaded.weights.iter().map(|t| t.to_device(device)).collect::<Result<Vec<_>>>()?)?;
    Ok((unet, params))
}

pub(crate) fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
