//! `ddpm-cuda eps`: ε̂ = model(x_t, t) for a batch given as .npy, for parity checks against other implementations.

use std::path::PathBuf;
use std::process::ExitCode;

use ddpm_cuda::{diffusers, npy, report, sample, Device, Error, Result, Tensor};

use super::{build, DEVICE_HELP};

#[derive(clap::Args)]
pub struct EpsArgs {
    /// A ddpm-cuda checkpoint or run folder, or a diffusers model folder / .safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// A diffusers config.json for a bare .safetensors --checkpoint.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// x_t as .npy: float32 [N, C, H, W].
    #[arg(long, value_name = "FILE")]
    pub x: PathBuf,
    /// Timesteps as .npy: int64 or int32 [N], each in 0..T−1.
    #[arg(long, value_name = "FILE")]
    pub t: PathBuf,
    /// The .npy to write ε̂ to: float32 [N, C, H, W].
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// For a ddpm-cuda checkpoint: the EMA weights instead of the raw ones.
    #[arg(long)]
    pub ema: bool,
    #[arg(long, default_value = "auto", help = DEVICE_HELP)]
    pub device: String,
    /// Activation dtype of the U-Net: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16 (mixed precision, CUDA only).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: ddpm_cuda::config::Precision,
}

pub fn run(args: EpsArgs) -> Result<ExitCode> {
    let EpsArgs { checkpoint, config, x, t, out, ema, device, precision } = args;
    report::check_output_path("--out", &out)?;
    let device = Device::parse(&device)?;
    let dtype = precision.resolve(&device)?;
    let loaded = diffusers::load_any(&checkpoint, config.as_deref(), ema)?;
    let (xs, shape) = npy::read_f32(&x)?;
    let ts = npy::read_timesteps(&t)?;
    let steps = loaded.diffusion.steps as i64;
    if let Some(&bad) = ts.iter().find(|&&v| v < 0 || v >= steps) {
        return Err(Error::msg(format!(
            "--t {}: timestep {bad} is outside 0..={} (the model's diffusion has T = {steps} steps)",
            t.display(),
            steps - 1
        )));
    }
    let (unet, params) = build(&loaded, &device)?;
    let x_t = Tensor::from_vec(xs, &shape).map_err(|e| Error::bad_file(&x, e.to_string()))?;
    let eps = sample::eps_as(&unet, &params, &x_t.to_device(&device)?, &ts, dtype)?;
    npy::write_f32(&out, &eps.to_vec()?, eps.shape())?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
