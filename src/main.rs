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
    Ddpm,
    Ddim,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// A preset from configs/: tiny, mnist, cifar10.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// A TOML config file instead of a preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value: --set model.ch=64 --set train.lr=1e-4 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
}

impl ModelArgs {
    fn load(&self) -> Result<Config> {
        let cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::preset(&self.preset)?,
        };
        cfg.with_overrides(&self.sets)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a U-Net on L_simple.
    Train {
        #[arg(long, value_parser = DatasetKind::parse)]
        dataset: DatasetKind,
        #[arg(long)]
        data_dir: PathBuf,
        /// Fetch the dataset from its canonical URL (checksums verified) if it is not in --data-dir.
        #[arg(long)]
        download: bool,
        #[command(flatten)]
        model: ModelArgs,
        /// Total optimizer steps (default: the config's).
        #[arg(long)]
        steps: Option<u64>,
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long)]
        lr: Option<f32>,
        /// Image side for --dataset folder.
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        /// The run directory: checkpoint, metrics.jsonl, loss.png, sample grids.
        #[arg(long, default_value = "runs/latest")]
        out: PathBuf,
        /// Continue the run in --out from its checkpoint.
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 50)]
        log_every: u64,
        /// Save an EMA sample grid every N steps (0: never).
        #[arg(long, default_value_t = 0)]
        sample_every: u64,
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        #[arg(long, default_value_t = 16)]
        num_samples: usize,
        /// DDIM steps for the periodic grids.
        #[arg(long, default_value_t = 50)]
        grid_steps: usize,
        /// No progress bar: one line per logged step.
        #[arg(long)]
        quiet: bool,
    },
    /// Generate images from a checkpoint: ours (file or run folder) or a diffusers UNet2DModel (folder, or
    /// .safetensors with config.json beside it or given by --config).
    Sample {
        /// The trained model (needed unless --model empirical).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A diffusers config.json for a bare .safetensors --checkpoint.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        empirical: EmpiricalArgs,
        #[arg(long, default_value_t = 64)]
        num: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, value_enum, default_value = "ddpm")]
        sampler: SamplerArg,
        /// DDIM steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// DDIM η (0: deterministic).
        #[arg(long, default_value_t = 0.0)]
        eta: f64,
        /// Use the EMA weights (what the paper samples from).
        #[arg(long)]
        ema: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        grid: Option<PathBuf>,
        #[arg(long)]
        npz: Option<PathBuf>,
        /// Also draw x̂0 along the chain for the first samples (the paper's Fig. 6), one row per sample.
        #[arg(long)]
        progressive: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// ε̂ = model(x_t, t) for a batch given as .npy (x float32 NCHW, t int64/int32): for parity checks.
    Eps {
        /// A ddpm-cuda checkpoint or run folder, or a diffusers model folder / .safetensors.
        #[arg(long)]
        checkpoint: PathBuf,
        /// A diffusers config.json for a bare .safetensors --checkpoint.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        x: PathBuf,
        #[arg(long)]
        t: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// For a ddpm-cuda checkpoint: the EMA weights instead of the raw ones.
        #[arg(long)]
        ema: bool,
        #[arg(long, default_value = "auto")]
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
        #[arg(long, value_parser = DatasetKind::parse)]
        dataset: DatasetKind,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "0,50,100,200,400,600,800,999")]
        t: Vec<usize>,
        #[arg(long, default_value_t = 4)]
        num: usize,
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "forward.png")]
        out: PathBuf,
    },
    /// End-to-end benchmarks: `bench train` times optimizer steps (img/s) after warm-up on random images.
    Bench {
        #[arg(value_parser = ["train"])]
        what: String,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "auto")]
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

fn run(cli: Cli) -> Result<()> {
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
            let mut config = fit_to_dataset(model.load()?, dataset, image_size)?;
            config.train.steps = steps.unwrap_or(config.train.steps);
            config.train.batch_size = batch_size.unwrap_or(config.train.batch_size);
            config.train.lr = lr.unwrap_or(config.train.lr);
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
                seed,
                log_every: log_every.max(1),
                sample_every,
                checkpoint_every: checkpoint_every.max(1),
                num_samples,
                grid_sampler: Sampler::Ddim { steps: grid_steps, eta: 0.0 },
                quiet,
            })?;
            eprintln!("step {}: checkpoint in {}", t.step, out.join("checkpoint.safetensors").display());
            Ok(())
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
            if let Some(path) = progressive {
                let per = c * h * w;
                let mut tiles = Vec::with_capacity(rows * frames.len() * per);
                for r in 0..rows {
                    for f in &frames {
                        tiles.extend_from_slice(&f[r * per..(r + 1) * per]);
                    }
                }
                let tiles = Tensor::from_vec(tiles, &[rows * frames.len(), c, h, w])?;
                report::save_grid(&path, &tiles, frames.len(), 2)?;
                eprintln!("wrote {}", path.display());
            }
            if let Some(path) = grid {
                report::save_grid(&path, &images, (num as f64).sqrt().ceil() as usize, 2)?;
                eprintln!("wrote {}", path.display());
            }
            if let Some(path) = npz {
                report::save_npz(&path, &images)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Eps { checkpoint, config, x, t, out, ema, device } => {
            let device = Device::parse(&device)?;
            let loaded = diffusers::load_any(&checkpoint, config.as_deref(), ema)?;
            let (unet, params) = build(&loaded, &device)?;
            let (xs, shape) = npy::read_f32(&x)?;
            let ts = npy::read_timesteps(&t)?;
            let x_t = Tensor::from_vec(xs, &shape).map_err(|e| Error::bad_file(&x, e.to_string()))?;
            let eps = sample::eps(&unet, &params, &x_t.to_device(&device)?, &ts)?;
            npy::write_f32(&out, &eps.to_vec()?, eps.shape())?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Forward { dataset, data_dir, t, num, image_size, seed, out } => {
            let ds = data::load(dataset, &data_dir, true, image_size)?;
            let diffusion = Diffusion::new(&Config::preset("cifar10")?.diffusion)?;
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
            Ok(())
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
            Ok(())
        }
        Command::Info { model } => {
            let cfg = model.load()?;
            let mut store = ParamStore::new();
            UNet::new(&cfg.model, &mut store, &mut Philox::new(0))?;
            for (name, t) in store.names().iter().zip(store.tensors()) {
                println!("{name:<56} {:>18} {:>10}", format!("{:?}", t.shape()), t.numel());
            }
            println!("{} tensors, {} parameters", store.len(), group_thousands(store.num_scalars()));
            Ok(())
        }
        Command::Fid(args) => ddpm_cuda::eval::cli::run_fid(&args),
        Command::FidStats(args) => ddpm_cuda::eval::cli::run_fid_stats(&args),
        Command::Nll(args) => ddpm_cuda::eval::cli::run_nll(&args),
        Command::Memorization(args) => ddpm_cuda::eval::cli::run_memorization(&args),
        Command::Kernels => {
            print!("{}", ddpm_cuda::backend::cuda::PTXAS_REPORT);
            Ok(())
        }
        Command::Selftest { device, filter, shapes } => {
            ddpm_cuda::selftest::run(&Device::parse(&device)?, filter.as_deref(), shapes)
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ddpm-cuda: {e}");
            ExitCode::FAILURE
        }
    }
}
