//! The training step on one CUDA device, plain or captured once as a CUDA graph and replayed (`--cuda-graphs`).
//!
//! Everything a step reads that changes from step to step lives in device memory that the step itself advances, so
//! one recording serves every step: the clean batch is copied into a fixed input buffer before each step; t and ε
//! are drawn on the device by one fused kernel (`ops::diffusion_step::training_batch`) whose Philox offsets, like
//! dropout's, come from device counters (`rng::DeviceCounter`) that the step's last kernel moves on; the timestep
//! embedding rows are gathered from a [T, ch] table; the optimizer's step count, rate and bias corrections are in
//! its device state (`optim::TrainStep`); the loss and norm go back by a copy into pinned memory recorded in the
//! graph. The buffers the recorded step touches outside its own temporaries (input, counters, tables, the backward
//! seed, parameters, moments, EMA) are allocated before the capture; a replay runs only while the parameters,
//! moments and EMA are still at the addresses the graph holds, else the step is captured again. The step's own
//! temporaries (activations, gradients, the loss) are the graph's allocations, at fixed addresses for its life, so
//! the optimizer's pointer table, uploaded once after the capture, points at them at every replay. The host still
//! counts every step, Adam step and Philox draw, so checkpoints and `--resume` are the same either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::{Timesteps, Trainer};
use crate::backend::cuda::CudaBackend;
use crate::backend::graph::{self, Graph, GraphMode};
use crate::backend::Storage;
use crate::diffusion::BatchTables;
use crate::ops::diffusion_step::cuda::advance_counters;
use crate::optim::TrainStep;
use crate::{ensure_shape, Error, Result, Tensor};

/// Plain steps before the step is captured: the first makes what is made once (the optimizer's table and state,
/// the EMA's own copy of the weights, cuBLAS's handle, the kernel lookups), so the capture records a steady step.
const WARMUP_STEPS: u64 = 1;

/// A recorded step and the addresses of the buffers it updates in place.
struct Captured {
    graph: Graph,
    addresses: Vec<u64>,
}

/// The device side of the training step (made at the first step on a CUDA device).
pub(crate) struct DeviceStep {
    be: Arc<CudaBackend>,
    /// The clean batch [B, C, H, W]; each step's images are copied here.
    input: Tensor,
    /// [noise offset, dropout offset], as the device counts them.
    counters: CudaSlice<u64>,
    /// The host offsets (noise, dropout) the counters hold before the next step.
    counted: (u64, u64),
    tables: BatchTables,
    /// d loss / d loss = 1, the backward pass's seed (made by the first step, in the loss's shape).
    seed: Option<Tensor>,
    /// The Philox draws (noise, dropout) of one step, as the capture saw them.
    draws: (u64, u64),
    graph: Option<Captured>,
    plain_steps: u64,
    /// Steps run as one graph launch.
    pub(crate) graph_launches: u64,
    /// `Auto` after a failed capture: plain launches from then on.
    gave_up: bool,
}

fn cuda_of(t: &mut Tensor) -> Result<&mut cudarc::driver::CudaSlice<f32>> {
    match t.storage_mut()? {
        Storage::Cuda(c) => c.f32_mut("train"),
        Storage::Cpu(_) => Err(Error::msg("train: the step's input is not on the CUDA device")),
    }
}

/// Say once per process why training runs without graphs.
fn note_fallback(e: &Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::SeqCst) {
        eprintln!("ddpm-cuda: training without CUDA graphs (capturing the step failed: {e})");
    }
}

/// The clean images of one step.
pub(crate) enum Images<'a> {
    Host(&'a [f32], &'a [usize]),
    Device(&'a Tensor),
}

impl DeviceStep {
    fn new(t: &Trainer, be: &Arc<CudaBackend>, shape: &[usize]) -> Result<DeviceStep> {
        let n: usize = shape.iter().product();
        Ok(DeviceStep {
            be: be.clone(),
            input: Tensor::from_storage(Storage::Cuda(be.zeros(n)?), shape)?,
            counters: be.stream().alloc_zeros::<u64>(2)?,
            counted: (u64::MAX, u64::MAX),
            tables: t.diffusion.batch_tables(t.config.model.ch, &t.device)?,
            seed: None,
            draws: (0, 0),
            graph: None,
            plain_steps: 0,
            graph_launches: 0,
            gave_up: false,
        })
    }
}

impl Trainer {
    /// One step on the CUDA device `be` (see the module docs); nothing waits for the device.
    pub(crate) fn queue_step_cuda(&mut self, be: &Arc<CudaBackend>, images: Images) -> Result<()> {
        let shape = match images {
            Images::Host(_, s) => s.to_vec(),
            Images::Device(x) => x.shape().to_vec(),
        };
        let mut ds = match self.cuda_step.take() {
            Some(ds) if ds.input.shape() == shape.as_slice() => ds,
            _ => DeviceStep::new(self, be, &shape)?,
        };
        let result = self.run_device_step(&mut ds, images);
        self.cuda_step = Some(ds);
        result
    }

    fn run_device_step(&mut self, ds: &mut DeviceStep, images: Images) -> Result<()> {
        let be = ds.be.clone();
        match images {
            Images::Host(v, _) => be.stream().memcpy_htod(v, cuda_of(&mut ds.input)?)?,
            Images::Device(x) => match x.storage() {
                Storage::Cuda(c) => be.stream().memcpy_dtod(c.f32("train")?, cuda_of(&mut ds.input)?)?,
                Storage::Cpu(v) => be.stream().memcpy_htod(v, cuda_of(&mut ds.input)?)?,
            },
        }
        // The device counters follow the host's offsets (a new trainer, or RNG states set from outside).
        let host = (self.noise_rng.offset(), self.dropout_rng.offset());
        if ds.counted != host {
            be.stream().memcpy_htod(&[host.0, host.1], &mut ds.counters)?;
            ds.counted = host;
        }
        let wants_graph = self.graphs != GraphMode::Off && !ds.gave_up && ds.plain_steps >= WARMUP_STEPS;
        if wants_graph {
            if let Some(c) = &ds.graph {
                let now = TrainStep::owned_addresses(&mut self.adam, &mut self.ema, self.params.tensors_mut())?;
                if now != c.addresses {
                    // The weights moved (replaced, or copied because shared): record the step again.
                    ds.graph = None;
                }
            }
            if ds.graph.is_none() {
                match self.capture_step(ds) {
                    Ok(()) => {}
                    Err(e) if self.graphs == GraphMode::On => {
                        return Err(Error::Cuda(format!("--cuda-graphs on: capturing the training step failed: {e}")))
                    }
                    Err(e) => {
                        note_fallback(&e);
                        ds.gave_up = true;
                        return self.plain_step(ds);
                    }
                }
                // The capture did the host's share of this step; the launch does the device's.
                ds.graph.as_ref().expect("captured").graph.launch()?;
                ds.graph_launches += 1;
                return Ok(());
            }
            let c = ds.graph.as_ref().expect("checked");
            c.graph.launch()?;
            ds.graph_launches += 1;
            self.optimizer.count_replayed_step(&mut self.adam);
            self.noise_rng = crate::rng::Philox::from_state(self.noise_rng.seed(), host.0 + ds.draws.0);
            self.dropout_rng = crate::rng::Philox::from_state(self.dropout_rng.seed(), host.1 + ds.draws.1);
            ds.counted = (self.noise_rng.offset(), self.dropout_rng.offset());
            self.step += 1;
            return Ok(());
        }
        self.plain_step(ds)
    }

    fn plain_step(&mut self, ds: &mut DeviceStep) -> Result<()> {
        self.record_step(ds)?;
        ds.plain_steps += 1;
        Ok(())
    }

    /// Record the step into a graph (the host's bookkeeping of the step runs now), then upload what the capture
    /// deferred.
    fn capture_step(&mut self, ds: &mut DeviceStep) -> Result<()> {
        let be = ds.be.clone();
        let (noise_rng, dropout_rng, step) = (self.noise_rng, self.dropout_rng, self.step);
        let adam_step = self.adam.state().2;
        let captured = graph::capture(&be, || self.record_step(ds));
        let graph = match captured {
            Ok(g) => g,
            Err(e) => {
                // Nothing ran on the device: the host's counts go back to before the attempt, which is possible
                // while the optimizer had not counted the step yet (it is the step's last host-side work).
                if self.step != step || self.adam.state().2 != adam_step {
                    return Err(Error::msg(format!(
                        "capturing the training step failed after the optimizer had counted it ({e}); cannot \
                         continue this run in this process"
                    )));
                }
                (self.noise_rng, self.dropout_rng) = (noise_rng, dropout_rng);
                return Err(e);
            }
        };
        self.optimizer.after_capture()?;
        let addresses = TrainStep::owned_addresses(&mut self.adam, &mut self.ema, self.params.tensors_mut())?;
        ds.graph = Some(Captured { graph, addresses });
        Ok(())
    }

    /// Enqueue one step: batch, forward, backward, optimizer, counters. Advances the host's step, Adam step and
    /// Philox offsets as the device will.
    fn record_step(&mut self, ds: &mut DeviceStep) -> Result<()> {
        let be = ds.be.clone();
        let (noise0, dropout0) = (self.noise_rng.offset(), self.dropout_rng.offset());
        let mut noise_rng = self.noise_rng.counted_on(&ds.counters, 0, &be)?;
        let batch = self.diffusion.training_batch_embedded(&ds.input, &mut noise_rng, &ds.tables)?;
        let dropout_rng = self.dropout_rng.counted_on(&ds.counters, 1, &be)?;
        let t = Timesteps::Embedded(batch.emb);
        let (loss, mut grads, dropout_rng) =
            self.forward_backward(batch.x_t, t, batch.noise, dropout_rng, 0, &mut ds.seed, &mut |_, _| Ok(()))?;
        ensure_shape!(loss.numel() == 1, "train", "a loss of {} elements", loss.numel());
        self.optimizer.step(&mut self.adam, &mut self.ema, self.params.tensors_mut(), &mut grads, &loss)?;
        let draws = (noise_rng.offset() - noise0, dropout_rng.offset() - dropout0);
        advance_counters(&be, &mut ds.counters, draws.0, draws.1)?;
        ds.draws = draws;
        self.noise_rng = noise_rng.uncounted();
        self.dropout_rng = dropout_rng.uncounted();
        ds.counted = (self.noise_rng.offset(), self.dropout_rng.offset());
        self.step += 1;
        Ok(())
    }
}
