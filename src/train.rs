//! The training loop: data → q_sample → U-Net → L_simple → backward → clip → Adam (with warm-up) → EMA.
//! `Trainer` is one optimizer step and its state; `run` adds the data, logging, figures, checkpoints, Ctrl-C
//! handling and `--resume`. With the same seed, N steps + resume + N steps equals 2N steps bit for bit. On a CUDA
//! device the step is `device::DeviceStep`'s: device-side draws and counters, captured as a CUDA graph after a
//! warm-up step and replayed (`--cuda-graphs`), bit-identical to plain launches.

mod device;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::graph::GraphMode;
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::data::loader::Loader;
use crate::data::{self, DatasetKind};
use crate::diffusion::{Diffusion, Sampler, TrainingBatch};
use crate::nn::unet::UNet;
use crate::nn::{Ctx, ParamStore};
use crate::ops::loss::mse;
use crate::optim::{Adam, AdamConfig, Ema, TrainStep};
use crate::rng::Philox;
use crate::{report, Device, Error, Result, Tape, Tensor, Var};

/// Independent RNG streams derived from the run seed.
const INIT_STREAM: u64 = 1;
const NOISE_STREAM: u64 = 2;
const DROPOUT_STREAM: u64 = 3;
const DATA_STREAM: u64 = 4;

pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// What the U-Net is given of a batch's timesteps: their values (it embeds them) or their embedding rows.
pub(crate) enum Timesteps<'a> {
    Values(&'a [f32]),
    Embedded(Tensor),
}

pub struct StepStats {
    pub loss: f32,
    pub grad_norm: f32,
    pub lr: f32,
}

/// The model, its optimizer and EMA, and the RNG streams: everything one step reads and writes.
pub struct Trainer {
    pub config: Config,
    pub unet: UNet,
    pub params: ParamStore,
    pub ema: Ema,
    pub adam: Adam,
    pub diffusion: Diffusion,
    pub noise_rng: Philox,
    pub dropout_rng: Philox,
    pub data_seed: u64,
    pub step: u64,
    pub device: Device,
    /// Clipping, warm-up Adam and EMA as one guarded step (on CUDA: three launches, nothing read back).
    pub optimizer: TrainStep,
    /// `--cuda-graphs`: whether the CUDA step is captured and replayed (ignored on the CPU).
    pub graphs: GraphMode,
    /// The CUDA step's fixed buffers, device counters and graph (made at the first CUDA step).
    cuda_step: Option<device::DeviceStep>,
}

/// Test-only hook: `DDPM_CUDA_TEST_NAN_AT_STEP=k` makes the loss of step k read as NaN (to test that the run
/// stops, names the step and keeps the checkpoint from before it). Not for users: it ruins the run.
pub const TEST_NAN_AT_STEP_VAR: &str = "DDPM_CUDA_TEST_NAN_AT_STEP";

impl Trainer {
    /// A fresh model initialised from `seed`. `config.train.precision` must be possible on `device` (bf16 needs
    /// CUDA); it is stored as asked (`auto` stays `auto`), so a run resumed on another device picks that device's
    /// default.
    pub fn new(config: Config, seed: u64, device: Device) -> Result<Trainer> {
        config.train.precision.resolve(&device)?;
        let mut params = ParamStore::new();
        let unet = UNet::new(&config.model, &mut params, &mut Philox::new(stream_seed(seed, INIT_STREAM)))?;
        let tensors = params.tensors().iter().map(|t| t.to_device(&device)).collect::<Result<Vec<_>>>()?;
        params.set_tensors(tensors)?;
        let ema = Ema::new(params.tensors(), config.train.ema_decay)?;
        let adam = Adam::new(AdamConfig { lr: config.train.lr, ..AdamConfig::default() }, params.tensors())?;
        let mut optimizer = TrainStep::new(config.train.grad_clip, config.train.warmup_steps)?;
        optimizer.inject_nan_at(std::env::var(TEST_NAN_AT_STEP_VAR).ok().and_then(|s| s.trim().parse().ok()));
        Ok(Trainer {
            optimizer,
            diffusion: Diffusion::new(&config.diffusion)?,
            noise_rng: Philox::new(stream_seed(seed, NOISE_STREAM)),
            dropout_rng: Philox::new(stream_seed(seed, DROPOUT_STREAM)),
            data_seed: stream_seed(seed, DATA_STREAM),
            step: 0,
            config,
            unet,
            params,
            ema,
            adam,
            device,
            graphs: GraphMode::default(),
            cuda_step: None,
        })
    }

    /// Continue from a checkpoint.
    pub fn from_checkpoint(ck: Checkpoint, device: Device) -> Result<Trainer> {
        let mut t = Trainer::new(ck.config.clone(), 0, device.clone())?;
        let on = |v: Vec<Tensor>| v.iter().map(|x| x.to_device(&device)).collect::<Result<Vec<_>>>();
        t.params.set_tensors(on(ck.model)?)?;
        t.ema = Ema::from_state(on(ck.ema)?, ck.config.train.ema_decay)?;
        t.adam = Adam::from_state(
            AdamConfig { lr: ck.config.train.lr, ..AdamConfig::default() },
            on(ck.adam_m)?,
            on(ck.adam_v)?,
            ck.step,
        )?;
        t.noise_rng = ck.noise_rng;
        t.dropout_rng = ck.dropout_rng;
        t.data_seed = ck.data_seed;
        t.step = ck.step;
        Ok(t)
    }

    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let (m, v, _) = self.adam.state();
        Ok(Checkpoint {
            config: self.config.clone(),
            step: self.step,
            model: self.params.tensors().to_vec(),
            ema: self.ema.shadow().to_vec(),
            adam_m: m.to_vec(),
            adam_v: v.to_vec(),
            noise_rng: self.noise_rng,
            dropout_rng: self.dropout_rng,
            data_seed: self.data_seed,
        })
    }

    /// The loss of one batch (a one-element tensor where the batch is) and its parameter gradients (in store
    /// order).
    pub fn loss_and_grads(&mut self, x0: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let batch = self.diffusion.training_batch(x0, &mut self.noise_rng)?;
        self.batch_loss_and_grads(batch, 0, &mut |_, _| Ok(()))
    }

    /// The loss and parameter gradients of a drawn training batch whose row 0 is row `first_row` of the global
    /// batch (data parallel: a replica's rows, whose dropout masks are those of their global rows; else 0).
    /// `on_final(k, g)` is called once per parameter k (store index) as soon as its gradient g is final, during
    /// the backward pass (zeros for a parameter the loss does not use).
    pub fn batch_loss_and_grads(
        &mut self,
        batch: TrainingBatch,
        first_row: usize,
        on_final: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let TrainingBatch { x_t, t, noise } = batch;
        let (loss, grads, dropout_rng) =
            self.forward_backward(x_t, Timesteps::Values(&t), noise, self.dropout_rng, first_row, &mut None, on_final)?;
        self.dropout_rng = dropout_rng;
        Ok((loss, grads))
    }

    /// One L_simple evaluation and its backward pass with dropout drawn from `dropout_rng`: the loss (one element),
    /// the parameter gradients (store order, zeros for a parameter the loss does not use) and `dropout_rng` moved
    /// past the step's draws. `seed` is d loss / d loss: reused when it has the loss's shape, else made (ones) and
    /// kept there. `on_final` as in `batch_loss_and_grads`. The tape and the bound parameters are gone on return,
    /// so the weights are the optimizer's alone again.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_backward(
        &self,
        x_t: Tensor,
        t: Timesteps,
        noise: Tensor,
        dropout_rng: Philox,
        first_row: usize,
        seed: &mut Option<Tensor>,
        on_final: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<(Tensor, Vec<Tensor>, Philox)> {
        let tape = Tape::new();
        let dtype = self.config.train.precision.resolve(&self.device)?;
        let cx = Ctx::with_grad(&tape, &self.params, true, dropout_rng).with_dtype(dtype).with_first_row(first_row);
        let x_t = Var::constant(x_t);
        let eps = match t {
            Timesteps::Values(t) => self.unet.forward(&cx, &x_t, t)?,
            Timesteps::Embedded(emb) => self.unet.forward_embedded(&cx, &x_t, &Var::constant(emb))?,
        };
        let loss = mse(&eps, &Var::constant(noise))?;
        let seed = match seed {
            Some(s) if s.shape() == loss.shape() => s.clone(),
            _ => seed.insert(Tensor::ones(loss.shape(), &self.device)?).clone(),
        };
        let vars = cx.param_vars();
        let index: HashMap<usize, usize> = vars.iter().enumerate().filter_map(|(k, v)| Some((v.id()?, k))).collect();
        let mut grads = tape.backward_hooked(&loss, seed, &mut |id, g| match (index.get(&id), g) {
            (None, _) => Ok(()),
            (Some(&k), Some(g)) => on_final(k, g),
            (Some(&k), None) => on_final(k, &Tensor::zeros(vars[k].shape(), &self.device)?),
        })?;
        let grads = vars
            .iter()
            .map(|v| grads.take(v).map_or_else(|| Tensor::zeros(v.shape(), &self.device), Ok))
            .collect::<Result<Vec<_>>>()?;
        Ok((loss.value().clone(), grads, cx.into_rng()))
    }

    /// Queue one optimizer step on a batch of clean images x0 [B, C, H, W] in [−1, 1]: on CUDA nothing waits for
    /// the device. A step whose loss or gradient norm is not finite, and every step after it, leaves the weights as
    /// they were; `report` says so.
    pub fn queue_step(&mut self, x0: &Tensor) -> Result<()> {
        if let Device::Cuda(be) = &self.device {
            return self.queue_step_cuda(&be.clone(), device::Images::Device(x0));
        }
        let (loss, mut grads) = self.loss_and_grads(x0)?;
        self.queue_update(&loss, &mut grads)
    }

    /// The optimizer half of `queue_step` (`TrainStep`: clip, warm-up Adam, EMA, guarded by the loss) on the
    /// step's loss and gradients (data parallel: the replicas' mean loss and all-reduced mean gradients).
    pub fn queue_update(&mut self, loss: &Tensor, grads: &mut [Tensor]) -> Result<()> {
        self.optimizer.step(&mut self.adam, &mut self.ema, self.params.tensors_mut(), grads, loss)?;
        self.step += 1;
        Ok(())
    }

    /// How many steps ran as one CUDA graph launch (0 on the CPU, with `--cuda-graphs off` or after a failed capture).
    pub fn graph_launches(&self) -> u64 {
        self.cuda_step.as_ref().map_or(0, |d| d.graph_launches)
    }

    /// `queue_step` on a loader batch: on CUDA its images are copied straight into the step's input buffer (no
    /// allocation).
    pub fn queue_batch(&mut self, batch: &crate::data::loader::Batch) -> Result<()> {
        if let Device::Cuda(be) = &self.device {
            return self.queue_step_cuda(&be.clone(), device::Images::Host(&batch.images, &batch.shape));
        }
        self.queue_step(&batch.images_tensor()?)
    }

    /// The last queued step's loss, gradient norm and rate (on CUDA: waits for the device), or an error naming the
    /// first step whose loss or norm was not finite (the weights are still those from before it).
    pub fn report(&self) -> Result<StepStats> {
        let r = self.optimizer.report()?;
        if let Some(bad) = r.non_finite {
            return Err(Error::msg(format!(
                "{bad} (seen after step {}): weights left as they were after step {}",
                self.step,
                bad.step - 1
            )));
        }
        Ok(StepStats { loss: r.loss, grad_norm: r.grad_norm, lr: r.lr })
    }

    /// `queue_step` and `report`: one step, waited for.
    pub fn step(&mut self, x0: &Tensor) -> Result<StepStats> {
        self.queue_step(x0)?;
        self.report()
    }

    /// Sample with the EMA weights (DDPM, all T steps unless `sampler` says otherwise), the U-Net in the run's
    /// precision.
    pub fn sample_ema(&self, n: usize, sampler: Sampler, seed: u64) -> Result<Tensor> {
        let dtype = self.config.train.precision.resolve(&self.device)?;
        let mut store = self.params.clone();
        store.set_tensors(self.ema.shadow().to_vec())?;
        let opts = crate::sample::SampleOptions {
            n,
            batch_size: n,
            sampler,
            seed,
            device: self.device.clone(),
            graphs: Default::default(),
        };
        crate::sample::generate_as(&self.unet, &store, &self.diffusion, &opts, dtype, &mut |_, _| {})
    }
}

pub struct RunOptions {
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub download: bool,
    pub config: Config,
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
    pub seed: u64,
    pub log_every: u64,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    pub num_samples: usize,
    /// Sampler for the periodic grids (DDIM keeps them cheap on CPU).
    pub grid_sampler: Sampler,
    pub quiet: bool,
    /// `--cuda-graphs` for the one-device CUDA step (data-parallel steps launch plainly).
    pub graphs: GraphMode,
}

/// Which signal stopped the run (0: none yet), written by the signal handlers.
fn signal_record() -> &'static Arc<std::sync::atomic::AtomicUsize> {
    static WHICH: std::sync::OnceLock<Arc<std::sync::atomic::AtomicUsize>> = std::sync::OnceLock::new();
    WHICH.get_or_init(|| Arc::new(std::sync::atomic::AtomicUsize::new(0)))
}

/// Set by Ctrl-C (SIGINT) or SIGTERM (what SLURM, Kubernetes and `timeout` send): the loop finishes its step, saves
/// a checkpoint and returns. `interrupt_signal` says which signal it was.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while saving still exits through the same path (the flag is only set again).
            let _ = signal_hook::flag::register_usize(sig, signal_record().clone(), sig as usize);
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    })
    .clone()
}

/// The signal (SIGINT 2, SIGTERM 15) that interrupted training, if one did.
pub fn interrupt_signal() -> Option<i32> {
    match signal_record().load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

/// The shell's exit status for a run stopped by `signal`: 128 + the signal number (130 for SIGINT, 143 for
/// SIGTERM).
pub fn exit_status_for(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// " by SIGTERM", " by SIGINT (Ctrl-C)", or nothing when the flag was set without a signal.
fn signal_name(sig: Option<i32>) -> &'static str {
    match sig {
        Some(signal_hook::consts::SIGTERM) => " by SIGTERM",
        Some(signal_hook::consts::SIGINT) => " by SIGINT (Ctrl-C)",
        _ => "",
    }
}

/// Keep only the lines of metrics.jsonl at or before `step` (after a resume from a checkpoint at `step`, the
/// lines after it describe steps that are run again). Returns how many lines were dropped.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<usize> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(0) };
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0;
    for line in text.lines() {
        let s = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_u64());
        if s.is_some_and(|s| s > step) {
            dropped += 1;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if dropped > 0 {
        crate::checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(dropped)
}

/// Train per `opts`; returns the trainer at the end (or at the interrupt).
///
/// With `opts.resume` the run continues from `<out>/checkpoint.safetensors`: the checkpoint's RNG states and data
/// order rule (`opts.seed` is not used), `opts.config` must equal the checkpoint's config except for
/// `train.steps` (the new target, at least the checkpoint's step), and metrics.jsonl is cut back to the
/// checkpoint's step. Nothing in the run dir changes before every check has passed.
pub fn run(opts: RunOptions) -> Result<Trainer> {
    run_on(opts, None)
}

/// `run` with the replicas of `layout` (several GPUs and/or processes, see `dist`); `opts.device` is
/// `layout.devices[0]`. Only the process holding rank 0 writes the run dir; the others follow its steps.
pub fn run_on(opts: RunOptions, layout: Option<crate::dist::Layout>) -> Result<Trainer> {
    let interrupted = interrupt_flag();
    let ckpt_path = opts.out.join("checkpoint.safetensors");
    let mut trainer = if opts.resume {
        let ck = Checkpoint::load(&ckpt_path)?;
        let mut want = opts.config.clone();
        want.train.steps = ck.config.train.steps;
        let diff = ck.config.diff(&want);
        if !diff.is_empty() {
            return Err(Error::msg(format!(
                "--resume: the requested config differs from the checkpoint's in {} (checkpoint vs requested: {}); \
                 a resumed run keeps its own config",
                ckpt_path.display(),
                diff.join(", ")
            )));
        }
        if opts.config.train.steps < ck.step {
            return Err(Error::msg(format!(
                "--steps {}: the checkpoint in {} is already at step {}",
                opts.config.train.steps,
                opts.out.display(),
                ck.step
            )));
        }
        let mut t = Trainer::from_checkpoint(ck, opts.device.clone())?;
        t.config.train.steps = opts.config.train.steps;
        t
    } else {
        if ckpt_path.exists() {
            return Err(Error::msg(format!(
                "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
                opts.out.display()
            )));
        }
        Trainer::new(opts.config.clone(), opts.seed, opts.device.clone())?
    };
    trainer.graphs = opts.graphs;
    let cfg = trainer.config.clone();

    if opts.download {
        data::download::download(opts.dataset, &opts.data_dir)?;
    }
    let dataset = data::load(opts.dataset, &opts.data_dir, true, cfg.model.image_size)?;
    if (dataset.channels, dataset.height, dataset.width)
        != (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    {
        return Err(Error::msg(format!(
            "the dataset's images are {}×{}×{} but the model takes {}×{}×{}",
            dataset.channels,
            dataset.height,
            dataset.width,
            cfg.model.in_channels,
            cfg.model.image_size,
            cfg.model.image_size
        )));
    }
    let mut loader = Loader::new(
        Arc::new(dataset),
        cfg.train.batch_size,
        trainer.data_seed,
        opts.dataset.default_flip(),
        trainer.step,
    )?;

    let mut dp = layout.as_ref().map(|l| crate::dist::DataParallel::launch(&trainer, l)).transpose()?;
    if let (Some(dp), Some(false)) = (dp.as_mut(), layout.as_ref().map(|l| l.writes())) {
        crate::dist::follow(dp, &mut trainer, &mut loader, &interrupted)?;
        return Ok(trainer);
    }

    // Every check has passed: from here on the run dir is written.
    let created = !opts.out.exists();
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let metrics_path = opts.out.join("metrics.jsonl");
    if opts.resume {
        let dropped = truncate_metrics(&metrics_path, trainer.step)?;
        if dropped > 0 {
            eprintln!("metrics.jsonl: dropped {dropped} line(s) after the checkpoint's step {}", trainer.step);
        }
    }
    let result = train_loop(&opts, &mut trainer, &mut loader, &interrupted, dp.as_mut());
    if let Err(e) = result {
        if ckpt_path.exists() {
            return Err(Error::msg(format!("{e}; the last checkpoint in {} is kept", opts.out.display())));
        }
        if created {
            // Nothing to resume from: do not leave a half-written run dir behind.
            let _ = std::fs::remove_dir_all(&opts.out);
        }
        return Err(e);
    }
    Ok(trainer)
}

fn train_loop(
    opts: &RunOptions,
    trainer: &mut Trainer,
    loader: &mut Loader,
    interrupted: &AtomicBool,
    mut dp: Option<&mut crate::dist::DataParallel>,
) -> Result<()> {
    let cfg = trainer.config.clone();
    let ckpt_path = opts.out.join("checkpoint.safetensors");
    let metrics_path = opts.out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let mut curve = read_curve(&metrics_path);
    let mut events = crate::tensorboard::EventWriter::create(&opts.out)?;
    if opts.resume {
        events.session_start(trainer.step + 1)?;
    }
    let total = cfg.train.steps;
    let bar = progress_bar(trainer.step, total, opts.quiet);
    let start = Instant::now();
    let first = trainer.step;
    // The trainer checkpoint, then the EMA weights as a diffusers model folder (UNet2DModel.from_pretrained).
    let save = |t: &Trainer| {
        t.checkpoint()?.save(&ckpt_path, t.params.names())?;
        crate::diffusers::export(&opts.out.join("diffusers"), &t.config, t.params.names(), t.ema.shadow())
    };

    while trainer.step < total {
        let batch = loader.next_batch()?;
        // Data parallel: every replica queues the step (its all-reduces included); one device: the step is queued.
        // Either way the stats are read (`report`) only when something needs them.
        let queued = match dp.as_deref_mut() {
            Some(dp) => dp.step(trainer, &batch, interrupted),
            None => trainer.queue_batch(&batch),
        };
        if let Err(e) = queued {
            bar.abandon();
            return Err(e);
        }
        let step = trainer.step;
        // Data parallel: the stop every rank agreed on (see `DataParallel::step`).
        let stop = dp.as_deref().map_or_else(|| interrupted.load(Ordering::SeqCst), |dp| dp.stop_agreed());
        let log = step.is_multiple_of(opts.log_every) || step == total;
        let sample = opts.sample_every > 0 && step.is_multiple_of(opts.sample_every);
        let save_now = step.is_multiple_of(opts.checkpoint_every) || step == total || stop;
        bar.set_position(step);
        // The device is waited for only when something is logged, sampled or saved (on the CPU there is nothing
        // to wait for): a non-finite step stops the run there, before anything after it is saved.
        if !(log || sample || save_now || trainer.device.is_cpu()) {
            continue;
        }
        let stats = match trainer.report() {
            Ok(s) => s,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        // Rounded once, so that metrics.jsonl and the event file hold the same number.
        let rate = (step - first) as f64 * cfg.train.batch_size as f64 / start.elapsed().as_secs_f64();
        let rate = (rate * 1000.0).round() / 1000.0;
        if log {
            bar.set_message(format!("loss {:.4}  {rate:.1} img/s", stats.loss));
            let line = format!(
                "{{\"step\":{step},\"loss\":{},\"lr\":{},\"grad_norm\":{},\"img_per_s\":{rate:.3},\"elapsed_s\":{:.3}}}",
                stats.loss,
                stats.lr,
                stats.grad_norm,
                start.elapsed().as_secs_f64()
            );
            writeln!(metrics, "{line}").map_err(|e| Error::io(&metrics_path, e))?;
            events.scalars(
                step,
                &[
                    ("train/loss", stats.loss),
                    ("train/lr", stats.lr),
                    ("train/grad_norm", stats.grad_norm),
                    ("train/img_per_s", rate as f32),
                ],
            )?;
            curve.push((step, stats.loss));
            report::save_loss_curve(&opts.out.join("loss.png"), &curve)?;
            if opts.quiet || bar.is_hidden() {
                eprintln!("step {step}/{total}  loss {:.5}  {rate:.1} img/s", stats.loss);
            }
        }
        if sample {
            let images = trainer.sample_ema(opts.num_samples, opts.grid_sampler, step)?;
            let cols = (opts.num_samples as f64).sqrt().ceil() as usize;
            let grid = report::grid(&images, cols, 2)?;
            let path = opts.out.join(format!("samples_{step:07}.png"));
            report::write_png(&path, &grid.pixels, grid.width, grid.height, grid.channels)?;
            events.image(step, "samples/ema", grid.png()?, grid.width, grid.height, grid.channels)?;
        }
        if save_now {
            save(trainer)?;
        }
        if stop {
            bar.abandon();
            let sig = signal_name(interrupt_signal());
            eprintln!("interrupted{sig} at step {step}: checkpoint saved to {}", ckpt_path.display());
            return Ok(());
        }
    }
    bar.finish();
    Ok(())
}

fn progress_bar(pos: u64, total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total).with_position(pos);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {per_sec} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// (step, loss) pairs already logged in a run dir (for the loss curve after a resume).
fn read_curve(path: &Path) -> Vec<(u64, f32)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()? as f32)))
        .collect()
}
