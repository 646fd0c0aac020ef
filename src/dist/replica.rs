//! One data-parallel optimizer step on one replica: its slice of the global batch, its forward and backward,
//! the gradients summed over every replica (bucketed all-reduce) and divided by the world size, then the same
//! clip / Adam / EMA on every replica, so the weights stay identical everywhere.
//!
//! What makes N replicas train like one GPU with the whole batch B (b = B/N per replica):
//! - data: replica r takes rows r·b .. (r+1)·b of the global batch (the loader's batch for the step);
//! - noise: every replica draws the global batch's t (B uniforms) and ε ([B, C, H, W] normals) from the same
//!   Philox stream, as `Diffusion::training_batch` does for B, and keeps its rows, so the noise stream advances
//!   the same way and each image meets the noise it would meet on one GPU;
//! - loss: each replica's L_r is the mean over its b images; L = (1/N) Σ_r L_r is the mean over B, and
//!   ∇L = (1/N) Σ_r ∇L_r: the all-reduce sums the N gradients (f32, rank order) and the sum is multiplied by
//!   1/N (exact for N a power of two). Clipping then sees the global gradient norm;
//! - dropout: replica r > 0 uses a stream of its own (rank 0's seed mixed with r) at rank 0's offset, so replicas
//!   do not share masks; with dropout > 0 the masks therefore differ from a one-GPU run (same distribution).

use crate::data::loader::Batch;
use crate::nn::Ctx;
use crate::ops::loss::mse;
use crate::optim::{clip_grad_norm, warmup_lr};
use crate::rng::Philox;
use crate::train::{stream_seed, StepStats, Trainer};
use crate::{backend::Storage, Error, Result, Tape, Tensor, Var};

use super::comm::Comm;

/// Gradients are all-reduced in buckets of at most this many bytes (PyTorch DDP's default bucket: 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The dropout stream of replica `rank` (rank 0 keeps the run's own, which the checkpoint stores).
pub fn replica_dropout(rng: Philox, rank: usize) -> Philox {
    if rank == 0 {
        rng
    } else {
        Philox::from_state(stream_seed(rng.seed(), 0x100 + rank as u64), rng.offset())
    }
}

/// Rows `start .. start + count` of a tensor (a copy, on its device).
fn rows(t: &Tensor, start: usize, count: usize) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    if start == 0 && count == shape[0] {
        return Ok(t.clone());
    }
    let per = t.numel() / shape[0];
    shape[0] = count;
    let storage = match t.storage() {
        Storage::Cpu(v) => Storage::Cpu(v[start * per..(start + count) * per].to_vec()),
        Storage::Cuda(c) => {
            let be = c.backend().clone();
            let mut out = be.empty(count * per)?;
            be.stream().memcpy_dtod(&c.f32("rows")?.slice(start * per..(start + count) * per), out.f32_mut("rows")?)?;
            Storage::Cuda(out)
        }
    };
    Tensor::from_storage(storage, &shape)
}

/// Σ over ranks of every gradient, times 1/world, in buckets of `BUCKET_BYTES` (store order): each bucket is
/// packed into one buffer, all-reduced, scaled and unpacked.
pub fn all_reduce_mean(comm: &Comm, grads: &mut [Tensor]) -> Result<()> {
    let world = comm.world();
    let be = comm.backend().clone();
    let cap = BUCKET_BYTES / 4;
    let mut start = 0;
    while start < grads.len() {
        let (mut end, mut n) = (start, 0);
        while end < grads.len() && (n == 0 || n + grads[end].numel() <= cap) {
            n += grads[end].numel();
            end += 1;
        }
        // SAFETY: the packing copies below write all n floats before the all-reduce reads them.
        let mut bucket = unsafe { be.stream().alloc::<f32>(n) }?;
        let mut off = 0;
        for g in &grads[start..end] {
            let Storage::Cuda(c) = g.storage() else {
                return Err(Error::msg("data-parallel gradients must live on a CUDA device"));
            };
            be.stream().memcpy_dtod(c.f32("all-reduce")?, &mut bucket.slice_mut(off..off + c.len()))?;
            off += c.len();
        }
        comm.all_reduce_sum(&mut bucket)?;
        let summed =
            Tensor::from_storage(Storage::Cuda(crate::backend::cuda::CudaStorage::from_slice(bucket, &be)), &[n])?;
        let mean = if world > 1 { summed.scale(1.0 / world as f32)? } else { summed };
        let Storage::Cuda(m) = mean.storage() else { unreachable!("scaled on its device") };
        let mut off = 0;
        for g in &mut grads[start..end] {
            let Storage::Cuda(c) = g.storage_mut()? else { unreachable!("checked above") };
            let len = c.len();
            be.stream().memcpy_dtod(&m.f32("all-reduce")?.slice(off..off + len), c.f32_mut("all-reduce")?)?;
            off += len;
        }
        start = end;
    }
    Ok(())
}

/// The mean of the replicas' losses, Σ_r L_r (f32, rank order) / world, and whether any replica asked to stop.
fn mean_loss(comm: &Comm, local: f32, stop: bool) -> Result<(f32, bool)> {
    let be = comm.backend();
    let mut buf = be.stream().clone_htod(&[local, f32::from(u8::from(stop))])?;
    comm.all_reduce_sum(&mut buf)?;
    let sums = be.stream().clone_dtoh(&buf)?;
    Ok((sums[0] / comm.world() as f32, sums[1] > 0.0))
}

/// One optimizer step of replica `comm.rank()` on its slice of the global `batch` (see the module docs). Every
/// replica returns the same stats and leaves the same weights; the flag says whether any replica passed `stop`.
pub fn step(t: &mut Trainer, comm: &Comm, batch: &Batch, stop: bool) -> Result<(StepStats, bool)> {
    let (rank, world) = (comm.rank(), comm.world());
    let [b, c, h, w] = batch.shape;
    if !b.is_multiple_of(world) {
        return Err(Error::msg(format!("the global batch of {b} does not split evenly over {world} GPUs")));
    }
    let (per, len) = (b / world, c * h * w);
    let x0 = Tensor::from_vec(batch.images[rank * per * len..(rank + 1) * per * len].to_vec(), &[per, c, h, w])?
        .to_device(&t.device)?;
    // The global batch's draws, as Diffusion::training_batch makes them for B images; this replica's rows.
    let steps = t.diffusion.schedule.steps();
    let u = t.noise_rng.uniform(b);
    let ts: Vec<usize> = u[rank * per..(rank + 1) * per]
        .iter()
        .map(|&u| (((u as f64) * steps as f64) as usize).min(steps - 1))
        .collect();
    let noise = rows(&t.noise_rng.normal_on(&[b, c, h, w], &t.device)?, rank * per, per)?;
    let x_t = t.diffusion.q_sample(&x0, &ts, &noise)?;
    let t_f32: Vec<f32> = ts.iter().map(|&s| s as f32).collect();

    // Forward and backward (as Trainer::loss_and_grads); the tape and context go before the update.
    let (local_loss, mut grads) = {
        let tape = Tape::new();
        let dtype = t.config.train.precision.resolve(&t.device)?;
        let cx = Ctx::with_grad(&tape, &t.params, true, replica_dropout(t.dropout_rng, rank)).with_dtype(dtype);
        let eps = t.unet.forward(&cx, &Var::constant(x_t), &t_f32)?;
        let loss = mse(&eps, &Var::constant(noise))?;
        let mut g = tape.backward(&loss)?;
        let grads = cx
            .param_vars()
            .iter()
            .map(|v| g.take(v).map_or_else(|| Tensor::zeros(v.shape(), &t.device), Ok))
            .collect::<Result<Vec<_>>>()?;
        let offset = cx.into_rng().offset();
        t.dropout_rng = Philox::from_state(t.dropout_rng.seed(), offset);
        (loss.value().item()?, grads)
    };
    all_reduce_mean(comm, &mut grads)?;
    let (loss, stop_any) = mean_loss(comm, local_loss, stop)?;
    if !loss.is_finite() {
        return Err(Error::msg(format!("the loss became {loss} at step {}: weights left as they were", t.step + 1)));
    }
    let grad_norm = clip_grad_norm(&mut grads, t.config.train.grad_clip)?;
    let lr = warmup_lr(t.step, t.config.train.lr, t.config.train.warmup_steps);
    t.adam.step_with_ema(t.params.tensors_mut(), &grads, lr, Some(&mut t.ema))?;
    t.step += 1;
    Ok((StepStats { loss, grad_norm, lr }, stop_any))
}
