//! `ddpm-cuda sample`: generate images from a checkpoint (or the empirical optimal denoiser) into a grid, an npz
//! and/or a progressive figure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use ddpm_cuda::backend::graph::GraphMode;
use ddpm_cuda::config::Config;
use ddpm_cuda::data::{self, DatasetKind};
use ddpm_cuda::diffusion::{Diffusion, Sampler};
use ddpm_cuda::eval::empirical::{optimal_eps, TrainingSet};
use ddpm_cuda::sample::{self, Batches, SampleOptions};
use ddpm_cuda::sample_store::{self, Manifest, SampleStore};
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
    /// Path of the samples npz to write (uint8 [N, H, W, C] under arr_0, as FID tools read). Batches are kept in
    /// FILE.partial/ as they finish and FILE appears only when all are done: rerunning the same command after an
    /// interruption (Ctrl-C stops after the batch in flight) continues from the finished batches.
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
    /// CUDA graphs on a CUDA device: capture the sampling step once and replay it (auto: fall back to plain
    /// launches, with a message, where capturing fails; on: such a failure is an error). Same images either way.
    #[arg(long, value_enum, default_value = "auto")]
    pub cuda_graphs: GraphMode,
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
        cuda_graphs,
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
    // The U-Net's activation dtype (an error here for bf16 on the CPU, before anything is loaded).
    let dtype = precision.resolve(&device)?;
    let (sampler, sampler_name) = match sampler {
        SamplerArg::Ddpm => (Sampler::Ddpm, "ddpm".to_string()),
        SamplerArg::Ddim => (Sampler::Ddim { steps, eta }, format!("ddim steps={steps} eta={eta}")),
    };
    let opts = SampleOptions { n: num, batch_size, sampler, seed, device, graphs: cuda_graphs };
    let batches = num.div_ceil(batch_size);

    // The ε-model: what it is for the manifest of a resumable --npz, and its image shape.
    // One value per run: the variants' sizes do not matter.
    #[allow(clippy::large_enum_variant)]
    enum Model {
        Empirical(TrainingSet, Diffusion),
        Unet(ddpm_cuda::nn::unet::UNet, ddpm_cuda::nn::ParamStore, Diffusion),
    }
    let (model, fingerprint, image) = match (empirical.model, checkpoint) {
        (ModelKind::Empirical, _) => {
            let (train, diffusion) = empirical.load()?;
            let id = format!(
                "empirical {:?} {} limit={:?} size={}",
                empirical.dataset,
                empirical.data_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default(),
                empirical.train_limit,
                empirical.image_size
            );
            let shape = train.shape;
            (Model::Empirical(train, diffusion), id, shape)
        }
        (ModelKind::Unet, None) => return Err(Error::msg("sample: give --checkpoint (or --model empirical)")),
        (ModelKind::Unet, Some(checkpoint)) => {
            let loaded = diffusers::load_any(&checkpoint, config.as_deref(), ema)?;
            eprintln!("{}: {}", checkpoint.display(), loaded.kind);
            let id = model_fingerprint(&loaded)?;
            let (unet, params) = build(&loaded, &opts.device)?;
            let diffusion = Diffusion::new(&loaded.diffusion)?;
            let (c, s) = (loaded.model.in_channels, loaded.model.image_size);
            (Model::Unet(unet, params, diffusion), id, [c, s, s])
        }
    };
    let [c, h, w] = image;

    // --npz is written batch by batch into OUT.partial/ (resumable), and assembled at the end.
    // Device kind and precision: batches computed otherwise would differ in their last bits, so they are not mixed.
    let device_kind = if opts.device.is_cpu() { "cpu" } else { "cuda" };
    let device_kind = format!("{device_kind} {dtype}");
    let manifest = Manifest::new(num, batch_size, seed, sampler_name, fingerprint, image, device_kind);
    let store = npz.as_deref().map(|p| SampleStore::open(p, manifest)).transpose()?;
    let done_before = store.as_ref().map_or(0, |s| s.done_count());
    if let (Some(s), true) = (&store, done_before > 0) {
        eprintln!("resuming: {done_before} of {batches} batches already in {}", s.dir().display());
    }
    // Ctrl-C / SIGTERM stop after the batch in flight when there is a store to resume from.
    let interrupted = store.as_ref().map(|_| ddpm_cuda::train::interrupt_flag());

    let bar = indicatif::ProgressBar::new(0);
    let style = "{spinner} [{elapsed_precise}] {wide_bar} {msg} ETA {eta}";
    bar.set_style(indicatif::ProgressStyle::with_template(style).map_err(|e| Error::msg(e.to_string()))?);
    let started = std::time::Instant::now();
    // Images finished by this run (batches of earlier runs excluded from the rate), in fractions of a batch.
    let mut images_this_run = 0.0f64;
    // x̂0 of the first batch's first rows at 10 evenly spaced points of the chain.
    let (rows, cols) = (num.min(batch_size).min(8), 10);
    let mut frames: Vec<Vec<f32>> = Vec::new();
    let mut frame_err = Ok(());
    let mut observe = |b: usize, s: &ddpm_cuda::diffusion::Step| {
        let size = batch_size.min(num - b * batch_size);
        let total = (batches * s.total) as u64;
        bar.set_length(total);
        bar.set_position(b as u64 * s.total as u64 + s.done as u64);
        let now = images_this_run + size as f64 * s.done as f64 / s.total as f64;
        let rate = now / started.elapsed().as_secs_f64().max(1e-9);
        let done = (b * batch_size) as f64 + size as f64 * s.done as f64 / s.total as f64;
        bar.set_message(format!("{:.0}/{num} images, {rate:.2} img/s", done));
        if s.done == s.total {
            images_this_run += size as f64;
        }
        if progressive.is_some() && b == 0 && (s.done * cols) % s.total < cols && frame_err.is_ok() {
            match s.x0_pred().and_then(|x| x.to_vec()) {
                Ok(v) => frames.push(v[..rows * v.len() / s.x_t.shape()[0]].to_vec()),
                Err(e) => frame_err = Err(e),
            }
        }
    };
    // Without --npz the images stay in memory (for the grid); with it they go to the store batch by batch.
    let mut in_memory: Vec<f32> = Vec::new();
    let keep_in_memory = store.is_none();
    let skip = |b: usize| {
        // Batch 0 is sampled again for the progressive figure (its chain is not stored).
        store.as_ref().is_some_and(|s| s.is_done(b)) && !(b == 0 && progressive.is_some())
    };
    let stop = || interrupted.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst));
    let put = |b: usize, x: Tensor| -> Result<()> {
        if let Some(s) = &store {
            s.put(b, &x)?;
        }
        if keep_in_memory {
            in_memory.extend(x.to_vec()?);
        }
        Ok(())
    };
    let mut sink = Batches { skip: &skip, stop: &stop, put: Box::new(put) };
    let finished = match &model {
        Model::Empirical(train, diffusion) => {
            let mut eps = |x: &Tensor, t: &[f32]| optimal_eps(train, &diffusion.schedule, x, t);
            sample::generate_batches(&mut eps, image, diffusion, &opts, &mut observe, &mut sink)?
        }
        Model::Unet(unet, params, diffusion) => {
            sample::generate_unet_batches(unet, params, diffusion, &opts, dtype, &mut observe, &mut sink)?
        }
    };
    drop(sink);
    frame_err?;
    bar.finish_and_clear();
    if !finished {
        let s = store.as_ref().expect("only a run with a store stops early");
        let done = s.done_count();
        eprintln!(
            "interrupted: {done} of {batches} batches are in {}; rerun the same command to finish",
            s.dir().display()
        );
        let sig = ddpm_cuda::train::interrupt_signal().unwrap_or(2);
        return Ok(ExitCode::from(ddpm_cuda::train::exit_status_for(sig)));
    }
    let images = match &store {
        // The grid is read back from the stored bytes (the same pixels), so a resumed run has all of them.
        Some(s) if grid.is_some() => {
            let mut all = Vec::with_capacity(num * c * h * w);
            for b in 0..batches {
                all.extend(sample_store::from_nhwc_u8(&s.read(b)?, image)?.to_vec()?);
            }
            Some(Tensor::from_vec(all, &[num, c, h, w])?)
        }
        Some(_) => None,
        None => Some(Tensor::from_vec(in_memory, &[num, c, h, w])?),
    };
    // The npz first: a figure that fails to write does not cost the samples.
    if let Some(s) = store {
        let path = s.finish()?;
        eprintln!("wrote {}", path.display());
    }
    let kept = |e: Error| match &npz {
        Some(p) => Error::msg(format!("{e} (the samples were written to {})", p.display())),
        None => e,
    };
    if let (Some(path), Some(images)) = (grid, &images) {
        report::save_grid(&path, images, (num as f64).sqrt().ceil() as usize, 2).map_err(kept)?;
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

/// SHA-256 of the model's configs and weights (the loaded values, so a retrained checkpoint under the same name is
/// another model): a resumed --npz must come from the same ε-model.
fn model_fingerprint(loaded: &diffusers::Loaded) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{:?}\n{:?}\n", loaded.model, loaded.diffusion).as_bytes());
    for t in &loaded.weights {
        h.update(format!("{:?}", t.shape()).as_bytes());
        h.update(bytemuck::cast_slice::<f32, u8>(&t.to_vec()?));
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}
