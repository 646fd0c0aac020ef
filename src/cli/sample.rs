//! `ddpm-cuda sample`: generate images from a checkpoint (or the empirical optimal denoiser) into a grid, an npz
//! and/or a progressive figure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use ddpm_cuda::config::Config;
use ddpm_cuda::data::{self, DatasetKind};
use ddpm_cuda::diffusion::{Diffusion, Sampler};
use ddpm_cuda::eval::empirical::{optimal_eps, TrainingSet};
use ddpm_cuda::sample::{self, SampleOptions};
use ddpm_cuda::{diffusers, report, Device, Error, Result, Tensor};

use super::{build, positive_usize, unit_f64, DEVICE_HELP};

#[derive(Clone, Copy, ValueEnum)]
pub enum SamplerArg {
    /// Algorithm 2: all T ancestral steps.
    Ddpm,
    /// DDIM with --steps steps and --eta.
    Ddim,
}

/// Which ε-model `ddpm-cuda sample` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// The U-Net of --checkpoint.
    Unet,
    /// The empirical optimal denoiser of --dataset (memorizes: samples are training images).
    Empirical,
}

/// `sample --model empirical`'s training set.
#[derive(clap::Args, Debug)]
pub struct EmpiricalArgs {
    /// The ε-model to sample.
    #[arg(long, value_enum, default_value = "unet")]
    pub model: ModelKind,
    /// The training set of the empirical denoiser: mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, value_parser = DatasetKind::parse)]
    pub dataset: Option<DatasetKind>,
    /// The folder holding the --dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training images (the denoiser's cost is linear in N).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Image side for --dataset folder.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
}

impl EmpiricalArgs {
    /// The training set and the paper's CIFAR-10 diffusion (linear β, T = 1000, σ² = β, clipped x̂0).
    pub fn load(&self) -> Result<(TrainingSet, Diffusion)> {
        let (Some(kind), Some(dir)) = (self.dataset, &self.data_dir) else {
            return Err(Error::msg("sample --model empirical needs --dataset KIND --data-dir DIR"));
        };
        let ds = data::load(kind, dir, true, self.image_size)?;
        let train = TrainingSet::from_dataset(&ds, self.train_limit);
        let diffusion = Diffusion::new(&Config::preset("cifar10")?.diffusion)?;
        Ok((train, diffusion))
    }
}

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The trained model (needed unless --model empirical): a checkpoint, run folder or diffusers model.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// A diffusers config.json for a bare .safetensors --checkpoint.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub empirical: EmpiricalArgs,
    /// Number of images to generate (at least 1).
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    pub num: usize,
    /// Images per sampling batch (at least 1).
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    pub batch_size: usize,
    /// The sampler.
    #[arg(long, value_enum, default_value = "ddpm")]
    pub sampler: SamplerArg,
    /// DDIM steps (at least 1, at most the model's T).
    #[arg(long, default_value_t = 50, value_parser = positive_usize)]
    pub steps: usize,
    /// DDIM η in [0, 1] (0: deterministic, 1: DDPM-like noise).
    #[arg(long, default_value_t = 0.0, value_parser = unit_f64)]
    pub eta: f64,
    /// Use the EMA weights (what the paper samples from).
    #[arg(long)]
    pub ema: bool,
    /// Seed of the sampling noise (batch b uses seed + b).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Path of the sample grid figure to write (.png, or .jpg/.jpeg for JPEG).
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
    /// Path of the samples npz to write (uint8 [N, H, W, C] under arr_0, as FID tools read).
    #[arg(long, value_name = "FILE")]
    pub npz: Option<PathBuf>,
    /// Path of a figure (.png/.jpg) of x̂0 along the chain for the first samples (the paper's Fig. 6).
    #[arg(long, value_name = "FILE")]
    pub progressive: Option<PathBuf>,
    #[arg(long, default_value = "auto", help = DEVICE_HELP)]
    pub device: String,
    /// Activation dtype of the U-Net: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16 (mixed precision, CUDA only).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: ddpm_cuda::config::Precision,
}

pub fn run(args: SampleArgs) -> Result<ExitCode> {
    let SampleArgs {
        checkpoint,
        config,
        empirical,
        num,
        batch_size,
        sampler,
        steps,
        eta,
        ema,
        seed,
        grid,
        npz,
        progressive,
        device,
        precision,
    } = args;
    if grid.is_none() && npz.is_none() && progressive.is_none() {
        return Err(Error::msg("sample: give --grid out.png, --npz out.npz and/or --progressive out.png"));
    }
    // Every output path is checked before the model is loaded or a step is sampled.
    if let Some(p) = &grid {
        report::check_image_path("--grid", p)?;
    }
    if let Some(p) = &progressive {
        report::check_image_path("--progressive", p)?;
    }
    if let Some(p) = &npz {
        report::check_output_path("--npz", p)?;
    }
    let device = Device::parse(&device)?;
    let sampler = match sampler {
        SamplerArg::Ddpm => Sampler::Ddpm,
        SamplerArg::Ddim => Sampler::Ddim { steps, eta },
    };
    let opts = SampleOptions { n: num, batch_size, sampler, seed, device };
    let batches = num.div_ceil(batch_size.max(1)) as u64;
    let bar = indicatif::ProgressBar::new(0);
    // x̂0 of the first batch's first rows at 10 evenly spaced points of the chain.
    let (rows, cols) = (num.min(batch_size).min(8), 10);
    let mut frames: Vec<Vec<f32>> = Vec::new();
    let mut frame_err = Ok(());
    let mut observe = |b: usize, s: &ddpm_cuda::diffusion::Step| {
        bar.set_length(batches * s.total as u64);
        bar.set_position(b as u64 * s.total as u64 + s.done as u64);
        if progressive.is_some() && b == 0 && (s.done * cols) % s.total < cols && frame_err.is_ok() {
            match s.x0_pred().and_then(|x| x.to_vec()) {
                Ok(v) => frames.push(v[..rows * v.len() / s.x_t.shape()[0]].to_vec()),
                Err(e) => frame_err = Err(e),
            }
        }
    };
    let (images, [c, h, w]) = match (empirical.model, checkpoint) {
        (ModelKind::Empirical, _) => {
            let (train, diffusion) = empirical.load()?;
            let mut model = |x: &Tensor, t: &[f32]| optimal_eps(&train, &diffusion.schedule, x, t);
            let (shape, d) = (train.shape, &diffusion);
            let x = sample::generate_with(&mut model, shape, d, &opts, &mut observe)?;
            (x, train.shape)
        }
        (ModelKind::Unet, None) => return Err(Error::msg("sample: give --checkpoint (or --model empirical)")),
        (ModelKind::Unet, Some(checkpoint)) => {
            let device = &opts.device;
            let loaded = diffusers::load_any(&checkpoint, config.as_deref(), ema)?;
            eprintln!("{}: {}", checkpoint.display(), loaded.kind);
            let (unet, params) = build(&loaded, device)?;
            let diffusion = Diffusion::new(&loaded.diffusion)?;
            let dtype = precision.resolve(device)?;
            let x = sample::generate_as(&unet, &params, &diffusion, &opts, dtype, &mut observe)?;
            let (c, s) = (loaded.model.in_channels, loaded.model.image_size);
            (x, [c, s, s])
        }
    };
    frame_err?;
    bar.finish_and_clear();
    // The npz first: a figure that fails to write does not cost the samples.
    if let Some(path) = &npz {
        report::save_npz(path, &images)?;
        eprintln!("wrote {}", path.display());
    }
    let kept = |e: Error| match &npz {
        Some(p) => Error::msg(format!("{e} (the samples were written to {})", p.display())),
        None => e,
    };
    if let Some(path) = grid {
        report::save_grid(&path, &images, (num as f64).sqrt().ceil() as usize, 2).map_err(kept)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = progressive {
        let per = c * h * w;
        let mut tiles = Vec::with_capacity(rows * frames.len() * per);
        for r in 0..rows {
            for f in &frames {
                tiles.extend_from_slice(&f[r * per..(r + 1) * per]);
            }
        }
        let tiles = Tensor::from_vec(tiles, &[rows * frames.len(), c, h, w])?;
        report::save_grid(&path, &tiles, frames.len(), 2).map_err(kept)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
