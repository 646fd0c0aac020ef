//! The `ddpm-cuda` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ddpm_cuda::config::Config;
use ddpm_cuda::data::{self, DatasetKind};
use ddpm_cuda::diffusion::{Diffusion, Sampler};
use ddpm_cuda::eval::cli::{EmpiricalArgs, FidArgs, FidStatsArgs, MemorizationArgs, ModelKind, NllArgs};
use ddpm_cuda::eval::empirical::optimal_eps;
use ddpm_cuda::nn::unet::UNet;
use ddpm_cuda::nn::ParamStore;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{diffusers, npy, report, sample, train, Device, Error, Result, Tensor};

#[derive(Parser)]
#[command(name = "ddpm-cuda", version, about = "Denoising Diffusion Probabilistic Models on CPU and CUDA")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum SamplerArg {
    /// Algorithm 2: all T ancestral steps.
    Ddpm,
    /// DDIM with --steps steps and --eta.
    Ddim,
}

/// `--preset`: one of the configs/ presets, named in the error otherwise.
fn parse_preset(s: &str) -> std::result::Result<String, String> {
    Config::preset(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

/// A count that must be at least 1.
fn positive_u64(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

fn positive_usize(s: &str) -> std::result::Result<usize, String> {
    positive_u64(s).map(|v| v as usize)
}

/// A learning rate: finite and > 0.
fn positive_f32(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number > 0")),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// DDIM's η, in [0, 1].
fn unit_f64(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside [0, 1]")),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// `forward --num`: 1 to 256 images.
fn forward_num(s: &str) -> std::result::Result<usize, String> {
    match positive_usize(s)? {
        v if v > 256 => Err(format!("{v} rows is more than the figure takes (at most 256)")),
        v => Ok(v),
    }
}

const DEVICE_HELP: &str = "auto (CUDA device 0 if present, else the CPU), cpu, cuda or cuda:N";

#[derive(clap::Args)]
struct ModelArgs {
    /// A preset from configs/: tiny, mnist or cifar10 [default: tiny].
    #[arg(long, value_parser = parse_preset)]
    preset: Option<String>,
    /// A TOML config file (a preset's layout) instead of a preset.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config value: --set model.ch=64 --set train.lr=1e-4 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
}

impl ModelArgs {
    fn load(&self) -> Result<Config> {
        let cfg = match (&self.config, &self.preset) {
            (Some(_), Some(_)) => return Err(Error::msg("give --preset or --config, not both")),
            (Some(path), None) => Config::from_file(path)?,
            (None, preset) => Config::preset(preset.as_deref().unwrap_or("tiny"))?,
        };
        cfg.with_overrides(&self.sets)
    }

    /// The flags given, as typed (for messages); empty when none was.
    fn given(&self) -> Vec<String> {
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

#[derive(Subcommand)]
enum Command {
    /// Train a U-Net on L_simple.
    Train {
        /// The dataset: mnist, fashion-mnist, cifar10 or folder (PNG/JPEG files in --data-dir).
        #[arg(long, value_parser = DatasetKind::parse)]
        dataset: DatasetKind,
        /// The folder holding the dataset's files (see --download).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Fetch the dataset from its canonical URL (checksums verified) if it is not in --data-dir.
        #[arg(long)]
        download: bool,
        #[command(flatten)]
        model: ModelArgs,
        /// Total optimizer steps, at least 1 (default: the config's; with --resume, the run's own target).
        #[arg(long, value_parser = positive_u64)]
        steps: Option<u64>,
        /// Images per optimizer step (default: the config's train.batch_size).
        #[arg(long, value_parser = positive_usize)]
        batch_size: Option<usize>,
        /// Peak learning rate after warm-up, finite and > 0 (default: the config's train.lr).
        #[arg(long, value_parser = positive_f32)]
        lr: Option<f32>,
        /// Image side in pixels for --dataset folder (the other datasets have a fixed size).
        #[arg(long, default_value_t = 64, value_parser = positive_usize)]
        image_size: usize,
        /// The run directory: checkpoint, metrics.jsonl, loss.png, sample grids, TensorBoard event files.
        #[arg(long, value_name = "DIR", default_value = "runs/latest")]
        out: PathBuf,
        /// Continue the run in --out from its checkpoint (its config, RNG state and data order).
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
        /// Seed of the initial weights, noise, dropout and data order [default: 0] (with --resume: the checkpoint's).
        #[arg(long)]
        seed: Option<u64>,
        /// Write a metrics.jsonl line, TensorBoard scalars and loss.png every N steps (at least 1).
        #[arg(long, default_value_t = 50, value_parser = positive_u64)]
        log_every: u64,
        /// Save an EMA sample grid every N steps (0: never).
        #[arg(long, default_value_t = 0)]
        sample_every: u64,
        /// Save the checkpoint every N steps (at least 1), and always at the end or on Ctrl-C/SIGTERM.
        #[arg(long, default_value_t = 1000, value_parser = positive_u64)]
        checkpoint_every: u64,
        /// Images in each periodic sample grid (at least 1).
        #[arg(long, default_value_t = 16, value_parser = positive_usize)]
        num_samples: usize,
        /// DDIM steps for the periodic grids (at least 1).
        #[arg(long, default_value_t = 50, value_parser = positive_usize)]
        grid_steps: usize,
        /// No progress bar: one line per logged step.
        #[arg(long)]
        quiet: bool,
    },
    /// Generate images from a checkpoint: ours (file or run folder) or a diffusers UNet2DModel (folder, or
    /// .safetensors with config.json beside it or given by --config).
    Sample {
        /// The trained model (needed unless --model empirical): a checkpoint, run folder or diffusers model.
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// A diffusers config.json for a bare .safetensors --checkpoint.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        empirical: EmpiricalArgs,
        /// Number of images to generate (at least 1).
        #[arg(long, default_value_t = 64, value_parser = positive_usize)]
        num: usize,
        /// Images per sampling batch (at least 1).
        #[arg(long, default_value_t = 64, value_parser = positive_usize)]
        batch_size: usize,
        /// The sampler.
        #[arg(long, value_enum, default_value = "ddpm")]
        sampler: SamplerArg,
        /// DDIM steps (at least 1, at most the model's T).
        #[arg(long, default_value_t = 50, value_parser = positive_usize)]
        steps: usize,
        /// DDIM η in [0, 1] (0: deterministic, 1: DDPM-like noise).
        #[arg(long, default_value_t = 0.0, value_parser = unit_f64)]
        eta: f64,
        /// Use the EMA weights (what the paper samples from).
        #[arg(long)]
        ema: bool,
        /// Seed of the sampling noise (batch b uses seed + b).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Path of the sample grid figure to write (.png, or .jpg/.jpeg for JPEG).
        #[arg(long, value_name = "FILE")]
        grid: Option<PathBuf>,
        /// Path of the samples npz to write (uint8 [N, H, W, C] under arr_0, as FID tools read).
        #[arg(long, value_name = "FILE")]
        npz: Option<PathBuf>,
        /// Path of a figure (.png/.jpg) of x̂0 along the chain for the first samples (the paper's Fig. 6).
        #[arg(long, value_name = "FILE")]
        progressive: Option<PathBuf>,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
    },
    /// ε̂ = model(x_t, t) for a batch given as .npy (x float32 NCHW, t int64/int32): for parity checks.
    Eps {
        /// A ddpm-cuda checkpoint or run folder, or a diffusers model folder / .safetensors.
        #[arg(long, value_name = "PATH")]
        checkpoint: PathBuf,
        /// A diffusers config.json for a bare .safetensors --checkpoint.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// x_t as .npy: float32 [N, C, H, W].
        #[arg(long, value_name = "FILE")]
        x: PathBuf,
        /// Timesteps as .npy: int64 or int32 [N], each in 0..T−1.
        #[arg(long, value_name = "FILE")]
        t: PathBuf,
        /// The .npy to write ε̂ to: float32 [N, C, H, W].
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// For a ddpm-cuda checkpoint: the EMA weights instead of the raw ones.
        #[arg(long)]
        ema: bool,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
    },
    /// FID of samples against reference stats, a samples npz or a dataset, and their Inception Score.
    Fid(FidArgs),
    /// Write pytorch-fid reference stats (mu, sigma) for a dataset or an images npz.
    FidStats(FidStatsArgs),
    /// The variational bound in bits/dim (paper Table 2's NLL) of a checkpoint on a test set.
    Nll(NllArgs),
    /// Each sample's distance to its nearest training image, with the nearest pairs drawn side by side.
    Memorization(MemorizationArgs),
    /// Draw the forward process q(x_t | x_0) for a few images at chosen t (one row per image).
    Forward {
        /// The dataset: mnist, fashion-mnist, cifar10 or folder.
        #[arg(long, value_parser = DatasetKind::parse)]
        dataset: DatasetKind,
        /// The folder holding the dataset's files.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Timesteps to draw, comma-separated, each in 0..=999 (the paper's T = 1000).
        #[arg(long, value_delimiter = ',', default_value = "0,50,100,200,400,600,800,999")]
        t: Vec<usize>,
        /// Number of images (rows), 1 to 256.
        #[arg(long, default_value_t = 4, value_parser = forward_num)]
        num: usize,
        /// Image side in pixels for --dataset folder.
        #[arg(long, default_value_t = 64, value_parser = positive_usize)]
        image_size: usize,
        /// Seed of the noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Path of the figure to write (.png, or .jpg/.jpeg).
        #[arg(long, value_name = "FILE", default_value = "forward.png")]
        out: PathBuf,
    },
    /// End-to-end benchmarks: `bench train` times optimizer steps (img/s) after warm-up on random images.
    Bench {
        /// What to time: train.
        #[arg(value_parser = ["train"])]
        what: String,
        #[command(flatten)]
        model: ModelArgs,
        /// Images per step (default: the config's train.batch_size).
        #[arg(long, value_parser = positive_usize)]
        batch_size: Option<usize>,
        /// Untimed steps first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed steps (at least 1).
        #[arg(long, default_value_t = 10, value_parser = positive_usize)]
        steps: usize,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
    },
    /// Print a preset's (or config file's) U-Net: its parameters, shapes and the total count.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Print the compiled CUDA kernels' ptxas report (registers, spills, per kernel and arch).
    Kernels,
    /// Check every kernel against the CPU reference on a device.
    Selftest {
        /// The device to test: cuda or cuda:N (cpu checks the reference against itself).
        #[arg(long, default_value = "cuda")]
        device: String,
        /// Only the cases whose op name contains this, or one of its comma-separated parts (e.g. `conv2d`,
        /// `group_norm,unet`).
        #[arg(long)]
        filter: Option<String>,
        /// Case sizes: the cifar10 U-Net's own shapes (full) or the same code paths at simulator-sized shapes
        /// (reduced). Default: reduced on the PTX simulator, full on a GPU.
        #[arg(long, value_enum)]
        shapes: Option<ddpm_cuda::selftest::Shapes>,
    },
}

/// The dataset decides the image size and channel count.
fn fit_to_dataset(mut cfg: Config, kind: DatasetKind, folder_size: usize) -> Result<Config> {
    let (c, s) = match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => (1, 28),
        DatasetKind::Cifar10 => (3, 32),
        DatasetKind::Folder => (3, folder_size),
    };
    cfg.model.in_channels = c;
    cfg.model.image_size = s;
    cfg.model.validate()?;
    Ok(cfg)
}

/// The config a `train` run uses. A fresh run: the preset/--config/--set with --steps, --batch-size and --lr on
/// top. A resumed run: the checkpoint's config; a flag that asks for something else is an error naming it, and
/// --steps may move the target (printed).
#[allow(clippy::too_many_arguments)]
fn train_config(
    model: &ModelArgs,
    dataset: DatasetKind,
    image_size: usize,
    steps: Option<u64>,
    batch_size: Option<usize>,
    lr: Option<f32>,
    seed: Option<u64>,
    resume: bool,
    out: &std::path::Path,
) -> Result<Config> {
    if !resume {
        let mut config = fit_to_dataset(model.load()?, dataset, image_size)?;
        config.train.steps = steps.unwrap_or(config.train.steps);
        config.train.batch_size = batch_size.unwrap_or(config.train.batch_size);
        config.train.lr = lr.unwrap_or(config.train.lr);
        let t = &config.train;
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(Error::msg(format!("train.lr = {}: the learning rate must be finite and > 0", t.lr)));
        }
        if t.batch_size == 0 || t.steps == 0 {
            return Err(Error::msg("train.batch_size and train.steps must be at least 1"));
        }
        return Ok(config);
    }
    let ckpt = out.join("checkpoint.safetensors");
    let (mut config, at) = ddpm_cuda::checkpoint::read_config(&ckpt)?;
    let mut conflicts = Vec::new();
    if !model.given().is_empty() {
        let mut asked = fit_to_dataset(model.load()?, dataset, image_size)?;
        asked.train.steps = config.train.steps;
        // --lr and --batch-size are judged on their own below.
        asked.train.lr = lr.unwrap_or(asked.train.lr);
        asked.train.batch_size = batch_size.unwrap_or(asked.train.batch_size);
        let diff = config.diff(&asked);
        if !diff.is_empty() {
            conflicts.push(format!("{} (checkpoint vs asked: {})", model.given().join(" "), diff.join(", ")));
        }
    }
    if let Some(lr) = lr.filter(|&lr| lr != config.train.lr) {
        conflicts.push(format!("--lr {lr} (the run's train.lr is {})", config.train.lr));
    }
    if let Some(b) = batch_size.filter(|&b| b != config.train.batch_size) {
        conflicts.push(format!("--batch-size {b} (the run's train.batch_size is {})", config.train.batch_size));
    }
    if !conflicts.is_empty() {
        return Err(Error::msg(format!(
            "--resume continues {} with the config stored in its checkpoint; these arguments conflict with it: {}. \
             Drop them to resume, or start a new run with another --out",
            out.display(),
            conflicts.join("; ")
        )));
    }
    if let Some(s) = steps.filter(|&s| s != config.train.steps) {
        if s < at {
            return Err(Error::msg(format!(
                "--steps {s}: the checkpoint in {} is already at step {at}",
                out.display()
            )));
        }
        eprintln!("--steps {s}: the run's target changes from {} to {s} steps", config.train.steps);
        config.train.steps = s;
    }
    let seed_note = match seed {
        Some(s) => format!(" (--seed {s} is not used)"),
        None => String::new(),
    };
    eprintln!(
        "resuming {} at step {at} of {}: config, seed, RNG state and data order come from the checkpoint{seed_note}",
        out.display(),
        config.train.steps
    );
    Ok(config)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train {
            dataset,
            data_dir,
            download,
            model,
            steps,
            batch_size,
            lr,
            image_size,
            out,
            resume,
            device,
            seed,
            log_every,
            sample_every,
            checkpoint_every,
            num_samples,
            grid_steps,
            quiet,
        } => {
            if out.is_file() {
                return Err(Error::msg(format!("--out {}: is a file, expected a run directory", out.display())));
            }
            let config = train_config(&model, dataset, image_size, steps, batch_size, lr, seed, resume, &out)?;
            let device = Device::parse(&device)?;
            eprintln!("training on {device}, run dir {}", out.display());
            let t = train::run(train::RunOptions {
                dataset,
                data_dir,
                download,
                config,
                out: out.clone(),
                resume,
                device,
                seed: seed.unwrap_or(0),
                log_every,
                sample_every,
                checkpoint_every,
                num_samples,
                grid_sampler: Sampler::Ddim { steps: grid_steps, eta: 0.0 },
                quiet,
            })?;
            if let Some(sig) = train::interrupt_signal() {
                return Ok(ExitCode::from(train::exit_status_for(sig)));
            }
            eprintln!("step {}: checkpoint in {}", t.step, out.join("checkpoint.safetensors").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample {
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
        } => {
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
                    let x = sample::generate_with(
                        &mut model,
                        shape,
                        d,
                        num,
                        batch_size,
                        sampler,
                        seed,
                        &device,
                        &mut observe,
                    )?;
                    (x, train.shape)
                }
                (ModelKind::Unet, None) => return Err(Error::msg("sample: give --checkpoint (or --model empirical)")),
                (ModelKind::Unet, Some(checkpoint)) => {
                    let loaded = diffusers::load_any(&checkpoint, config.as_deref(), ema)?;
                    eprintln!("{}: {}", checkpoint.display(), loaded.kind);
                    let (unet, params) = build(&loaded, &device)?;
                    let diffusion = Diffusion::new(&loaded.diffusion)?;
                    let x = sample::generate(
                        &unet,
                        &params,
                        &diffusion,
                        num,
                        batch_size,
                        sampler,
                        seed,
                        &device,
                        &mut observe,
                    )?;
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
        Command::Eps { checkpoint, config, x, t, out, ema, device } => {
            report::check_output_path("--out", &out)?;
            let device = Device::parse(&device)?;
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
            let eps = sample::eps(&unet, &params, &x_t.to_device(&device)?, &ts)?;
            npy::write_f32(&out, &eps.to_vec()?, eps.shape())?;
            eprintln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward { dataset, data_dir, t, num, image_size, seed, out } => {
            report::check_image_path("--out", &out)?;
            let diffusion = Diffusion::new(&Config::preset("cifar10")?.diffusion)?;
            let steps = diffusion.schedule.steps();
            if let Some(bad) = t.iter().find(|&&v| v >= steps) {
                return Err(Error::msg(format!("--t: timestep {bad} is outside 0..={} (T = {steps})", steps - 1)));
            }
            if t.is_empty() {
                return Err(Error::msg("--t: give at least one timestep"));
            }
            let ds = data::load(dataset, &data_dir, true, image_size)?;
            let (c, h, w) = (ds.channels, ds.height, ds.width);
            let mut rows = Vec::new();
            let mut rng = Philox::new(seed);
            for i in 0..num.min(ds.n) {
                let mut x0 = vec![0.0; c * h * w];
                ds.image_f32(i, false, &mut x0);
                let x0 = Tensor::from_vec(x0, &[1, c, h, w])?;
                for &ti in &t {
                    let noise = rng.normal_tensor(&[1, c, h, w])?;
                    rows.extend(diffusion.q_sample(&x0, &[ti], &noise)?.to_vec()?);
                }
            }
            let n = rows.len() / (c * h * w);
            report::save_grid(&out, &Tensor::from_vec(rows, &[n, c, h, w])?, t.len(), 2)?;
            eprintln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: _, model, batch_size, warmup, steps, device } => {
            let mut cfg = model.load()?;
            cfg.train.batch_size = batch_size.unwrap_or(cfg.train.batch_size);
            let device = Device::parse(&device)?;
            let r = ddpm_cuda::bench::train(cfg, &device, warmup, steps)?;
            println!(
                "bench train: {} params, batch {}, {} steps in {:.2} s on {device}: {:.2} img/s, {:.3} steps/s",
                group_thousands(r.params),
                r.batch_size,
                r.steps,
                r.seconds,
                r.img_per_s,
                r.steps_per_s
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { model } => {
            let cfg = model.load()?;
            let mut store = ParamStore::new();
            UNet::new(&cfg.model, &mut store, &mut Philox::new(0))?;
            for (name, t) in store.names().iter().zip(store.tensors()) {
                println!("{name:<56} {:>18} {:>10}", format!("{:?}", t.shape()), t.numel());
            }
            println!("{} tensors, {} parameters", store.len(), group_thousands(store.num_scalars()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Fid(args) => ddpm_cuda::eval::cli::run_fid(&args).map(|_| ExitCode::SUCCESS),
        Command::FidStats(args) => ddpm_cuda::eval::cli::run_fid_stats(&args).map(|_| ExitCode::SUCCESS),
        Command::Nll(args) => ddpm_cuda::eval::cli::run_nll(&args).map(|_| ExitCode::SUCCESS),
        Command::Memorization(args) => ddpm_cuda::eval::cli::run_memorization(&args).map(|_| ExitCode::SUCCESS),
        Command::Kernels => {
            print!("{}", ddpm_cuda::backend::cuda::PTXAS_REPORT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest { device, filter, shapes } => {
            ddpm_cuda::selftest::run(&Device::parse(&device)?, filter.as_deref(), shapes).map(|_| ExitCode::SUCCESS)
        }
    }
}

/// The U-Net a loaded model describes, with its weights on `device`.
fn build(loaded: &diffusers::Loaded, device: &Device) -> Result<(UNet, ParamStore)> {
    let mut params = ParamStore::new();
    let unet = UNet::new(&loaded.model, &mut params, &mut Philox::new(0))?;
    params.set_tensors(loaded.weights.iter().map(|t| t.to_device(device)).collect::<Result<Vec<_>>>()?)?;
    Ok((unet, params))
}

fn group_thousands(n: usize) -> String {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ddpm-cuda: {e}");
            ExitCode::FAILURE
        }
    }
}
