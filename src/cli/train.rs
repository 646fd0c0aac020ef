//! `ddpm-cuda train`: its arguments, the config a run uses (fresh or resumed) and the driver.

use std::path::PathBuf;
use std::process::ExitCode;

use ddpm_cuda::backend::graph::GraphMode;
use ddpm_cuda::config::{Config, Precision};
use ddpm_cuda::data::DatasetKind;
use ddpm_cuda::diffusion::Sampler;
use ddpm_cuda::{train, Device, Error, Result};

use super::{positive_f32, positive_u64, positive_usize, ModelArgs};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The dataset: mnist, fashion-mnist, cifar10 or folder (PNG/JPEG files in --data-dir).
    #[arg(long, value_parser = DatasetKind::parse)]
    pub dataset: DatasetKind,
    /// The folder holding the dataset's files (see --download).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Fetch the dataset from its canonical URL (checksums verified) if it is not in --data-dir.
    #[arg(long)]
    pub download: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Total optimizer steps, at least 1 (default: the config's; with --resume, the run's own target).
    #[arg(long, value_parser = positive_u64)]
    pub steps: Option<u64>,
    /// Images per optimizer step (default: the config's train.batch_size).
    #[arg(long, value_parser = positive_usize)]
    pub batch_size: Option<usize>,
    /// Peak learning rate after warm-up, finite and > 0 (default: the config's train.lr).
    #[arg(long, value_parser = positive_f32)]
    pub lr: Option<f32>,
    /// Image side in pixels for --dataset folder (the other datasets have a fixed size).
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    pub image_size: usize,
    /// The run directory: checkpoint, metrics.jsonl, loss.png, sample grids, TensorBoard event files.
    #[arg(long, value_name = "DIR", default_value = "runs/latest")]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint (its config, RNG state and data order).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value = "auto", help = TRAIN_DEVICE_HELP)]
    pub device: String,
    /// Activation dtype: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16 (mixed precision, CUDA only; weights,
    /// Adam, EMA and checkpoints stay f32). Stored in the run's config; with --resume it replaces the stored one.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Seconds a data-parallel rank may stay silent (a dead or hung process) before the others stop, naming it.
    #[arg(long, default_value_t = 600, value_parser = positive_u64)]
    pub dist_timeout: u64,
    /// Data parallel: gradients are all-reduced in buckets of at most this many KiB (parameters in reverse order,
    /// as PyTorch DDP's bucket_cap_mb; default 25 MiB).
    #[arg(long, default_value_t = 25 * 1024, value_parser = positive_u64)]
    pub dist_bucket_kib: u64,
    /// Data parallel: all-reduce the buckets after the backward pass instead of as soon as each bucket's
    /// gradients are final (the same sums, bit for bit; for comparison).
    #[arg(long)]
    pub dist_no_overlap: bool,
    /// Seed of the initial weights, noise, dropout and data order [default: 0] (with --resume: the checkpoint's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a metrics.jsonl line, TensorBoard scalars and loss.png every N steps (at least 1).
    #[arg(long, default_value_t = 50, value_parser = positive_u64)]
    pub log_every: u64,
    /// Save an EMA sample grid every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    /// Save the checkpoint every N steps (at least 1), and always at the end or on Ctrl-C/SIGTERM.
    #[arg(long, default_value_t = 1000, value_parser = positive_u64)]
    pub checkpoint_every: u64,
    /// Images in each periodic sample grid (at least 1).
    #[arg(long, default_value_t = 16, value_parser = positive_usize)]
    pub num_samples: usize,
    /// DDIM steps for the periodic grids (at least 1).
    #[arg(long, default_value_t = 50, value_parser = positive_usize)]
    pub grid_steps: usize,
    /// No progress bar: one line per logged step.
    #[arg(long)]
    pub quiet: bool,
    /// CUDA graphs for the training step on one CUDA device: after a plain warm-up step, capture the whole step
    /// (batch draws, forward, backward, optimizer) once and replay it, one graph launch per step (auto: fall back to
    /// plain launches, with a message, where capturing fails; on: such a failure is an error). Bit-identical either
    /// way. Ignored on the CPU; data-parallel runs (several GPUs or processes) launch plainly.
    #[arg(long, value_enum, default_value = "auto")]
    pub cuda_graphs: GraphMode,
}

const TRAIN_DEVICE_HELP: &str = "auto (CUDA device 0 if present, else the CPU), cpu, cuda or cuda:N; several GPUs \
    in one process: cuda:0,1,2,3 or cuda:all (one replica per GPU; the batch is the global batch, split evenly). \
    Under torchrun or srun (WORLD_SIZE / SLURM_NTASKS > 1) each process drives GPU LOCAL_RANK";

/// The dataset decides the image size and channel count.
fn fit_to_dataset(mut cfg: Config, kind: DatasetKind, folder_size: usize) -> Result<Config> {
    let (c, s) = kind.image_shape(folder_size);
    cfg.model.in_channels = c;
    cfg.model.image_size = s;
    cfg.model.validate()?;
    Ok(cfg)
}

/// The config a `train` run uses. A fresh run: the preset/--config/--set with --steps, --batch-size and --lr on
/// top. A resumed run: the checkpoint's config; a flag that asks for something else is an error naming it, and
/// --steps may move the target (printed).
fn train_config(args: &TrainArgs) -> Result<Config> {
    let TrainArgs { ref model, dataset, image_size, steps, batch_size, lr, seed, resume, ref out, precision, .. } =
        *args;
    if !resume {
        let mut config = fit_to_dataset(model.load()?, dataset, image_size)?;
        config.train.precision = precision.unwrap_or(config.train.precision);
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
        // --precision is judged on its own below.
        asked.train.precision = config.train.precision;
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
    // The precision may change at a resume (checkpoints are f32 whatever the run computes in).
    if let Some(p) = precision.filter(|&p| p != config.train.precision) {
        eprintln!("--precision {p:?}: the run's train.precision changes from {:?}", config.train.precision);
        config.train.precision = p;
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

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    if args.out.is_file() {
        return Err(Error::msg(format!("--out {}: is a file, expected a run directory", args.out.display())));
    }
    let config = train_config(&args)?;
    let TrainArgs {
        dataset,
        data_dir,
        download,
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
        dist_timeout,
        dist_bucket_kib,
        dist_no_overlap,
        cuda_graphs,
        ..
    } = args;
    let layout =
        ddpm_cuda::dist::launch::layout(&device, std::time::Duration::from_secs(dist_timeout))?.map(|mut l| {
            l.bucket_bytes = usize::try_from(dist_bucket_kib).unwrap_or(usize::MAX / 1024) * 1024;
            l.overlap = !dist_no_overlap;
            l
        });
    let device = match &layout {
        Some(l) => l.devices[0].clone(),
        None => Device::parse(&device)?,
    };
    let rank = layout.as_ref().map_or(0, |l| l.first_rank);
    match &layout {
        Some(l) if l.process.is_some() => {
            eprintln!(
                "training as rank {rank} of {} on {device}, run dir {} (written by rank 0)",
                l.world,
                out.display()
            )
        }
        Some(l) => eprintln!("training on {} GPUs ({:?}), run dir {}", l.world, l.devices, out.display()),
        None => eprintln!("training on {device}, run dir {}", out.display()),
    }
    let t = train::run_on(
        train::RunOptions {
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
            graphs: cuda_graphs,
        },
        layout,
    )?;
    if let Some(sig) = train::interrupt_signal() {
        return Ok(ExitCode::from(train::exit_status_for(sig)));
    }
    if rank != 0 {
        eprintln!("rank {rank}: finished at step {}", t.step);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("step {}: checkpoint in {}", t.step, out.join("checkpoint.safetensors").display());
    Ok(ExitCode::SUCCESS)
}
