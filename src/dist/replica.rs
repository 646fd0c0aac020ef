//! One data-parallel optimizer step on one replica: its slice of the global batch through the `Trainer`'s own
//! loss and gradients, the gradients summed over every replica (bucketed all-reduce, started during the backward
//! pass) and divided by the world size, then the `Trainer`'s own one-pass optimizer (`Trainer::queue_update`) on
//! every replica, so the weights stay identical everywhere and nothing waits for the device.
//!
//! What makes N replicas train like one GPU with the whole batch B (b = B/N per replica):
//! - data: replica r takes rows r·b .. (r+1)·b of the global batch (the loader's batch for the step);
//! - noise: every replica draws the global batch's t (B uniforms) and ε ([B, C, H, W] normals) from the same
//!   Philox stream, as `Diffusion::training_batch` does for B, and keeps its rows, so the noise stream advances
//!   the same way and each image meets the noise it would meet on one GPU;
//! - dropout: every replica runs the run's dropout stream, its rows at their global row (`Ctx::with_first_row`):
//!   an element's mask depends only on the draw and its index in the global batch, as on one GPU;
//! - loss: each replica's L_r is the mean over its b images; L = (1/N) Σ_r L_r is the mean over B, and
//!   ∇L = (1/N) Σ_r ∇L_r: the all-reduce sums the N gradients (f32, rank order) and the sum is multiplied by
//!   1/N (exact for N a power of two). Clipping then sees the global gradient norm; `Trainer::report` the mean
//!   loss.
//!
//! Buckets (as PyTorch DDP): the parameters in reverse store order (roughly the order the backward pass finishes
//! them), cut into buckets of at most `bucket_bytes`; the tape tells when a parameter's gradient is final
//! (`Tape::backward_hooked`), it is copied into its bucket, and a bucket whose gradients are all in is
//! all-reduced at once on a stream of its own (after an event on the compute stream), in bucket order on every
//! rank, while the backward pass goes on. Without overlap the same buckets are all-reduced after the backward
//! pass: the same sums, bit for bit.
//!
//! At the run's last step every replica checks that its weights, EMA and moments are rank 0's, bit for bit.
//!
//! The stop flag (Ctrl-C, SIGTERM in any process) rides on the step's last all-reduce with the loss; it is read
//! back after the next step is queued (waiting for this step only), so every rank stops after the same step,
//! one step after the signal, with no host sync inside a step.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaSlice, CudaStream};

use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::Storage;
use crate::data::loader::Batch;
use crate::diffusion::TrainingBatch;
use crate::train::Trainer;
use crate::{Error, Result, Tensor};

use super::comm::Comm;

/// Gradients are all-reduced in buckets of at most this many bytes by default (PyTorch DDP's default bucket:
/// 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The buckets of parameters of `sizes` elements (f32): parameter indices in reverse store order, cut so that a
/// bucket holds at most `cap_bytes` (a larger parameter alone).
pub fn plan_buckets(sizes: &[usize], cap_bytes: usize) -> Vec<Vec<usize>> {
    let cap = (cap_bytes / 4).max(1);
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut filled = 0;
    for k in (0..sizes.len()).rev() {
        match buckets.last_mut() {
            Some(b) if !b.is_empty() && filled + sizes[k] <= cap => b.push(k),
            _ => {
                buckets.push(vec![k]);
                filled = 0;
            }
        }
        filled += sizes[k];
    }
    buckets
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

/// Replica `rank`'s rows of the global batch's training draws (as `Diffusion::training_batch` draws them for all
/// B images) for its clean images `x0` (its rows of the batch).
fn replica_batch(t: &mut Trainer, x0: &Tensor, global: usize, rank: usize) -> Result<TrainingBatch> {
    let per = x0.shape()[0];
    let steps = t.diffusion.schedule.steps();
    let u = t.noise_rng.uniform(global);
    let ts: Vec<usize> = u[rank * per..(rank + 1) * per]
        .iter()
        .map(|&u| (((u as f64) * steps as f64) as usize).min(steps - 1))
        .collect();
    let mut shape = x0.shape().to_vec();
    shape[0] = global;
    let noise = rows(&t.noise_rng.normal_on(&shape, &t.device)?, rank * per, per)?;
    let x_t = t.diffusion.q_sample(x0, &ts, &noise)?;
    Ok(TrainingBatch { x_t, t: ts.iter().map(|&s| s as f32).collect(), noise })
}

fn cuda(t: &Tensor) -> Result<&CudaStorage> {
    match t.storage() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg("data-parallel gradients must live on a CUDA device")),
    }
}

struct Bucket {
    /// Parameter indices (reverse store order) and where each starts in `buf`.
    params: Vec<(usize, usize)>,
    /// The packed gradients, all-reduced in place.
    buf: Tensor,
    /// Gradients of this step not yet packed.
    waiting: usize,
}

/// Page-locked host memory for the agreed stop flag, read once the step that wrote it is done.
struct HostFlag {
    ptr: *mut f32,
    done: Option<CudaEvent>,
}

impl HostFlag {
    fn new(be: &CudaBackend) -> Result<HostFlag> {
        be.context().bind_to_thread()?;
        // SAFETY: a plain allocation of 4 bytes, zeroed before anyone reads it.
        let ptr = unsafe { cudarc::driver::result::malloc_host(4, 0) }? as *mut f32;
        // SAFETY: 4 bytes, just allocated.
        unsafe { ptr.write(0.0) };
        Ok(HostFlag { ptr, done: None })
    }

    /// Wait for the step that queued the last copy (only that step), then the flag.
    fn read(&mut self) -> Result<bool> {
        if let Some(e) = self.done.take() {
            e.synchronize()?;
        }
        // SAFETY: initialised; no copy in flight after the event.
        Ok(unsafe { self.ptr.read() } > 0.0)
    }

    /// Queue a copy of `src[1]` into the flag on `stream`, and an event after it.
    fn copy_from(&mut self, src: &CudaSlice<f32>, stream: &Arc<CudaStream>) -> Result<()> {
        use cudarc::driver::DevicePtr;
        let flag = src.slice(1..2);
        let (from, _record) = flag.device_ptr(stream);
        // SAFETY: one f32 each side; page-locked, so the copy is asynchronous and `read` waits for its event.
        unsafe {
            let to = std::slice::from_raw_parts_mut(self.ptr, 1);
            cudarc::driver::result::memcpy_dtoh_async(to, from, stream.cu_stream())?;
        }
        self.done = Some(stream.record_event(None)?);
        Ok(())
    }
}

impl Drop for HostFlag {
    fn drop(&mut self) {
        // A queued copy must land before the memory goes.
        if let Some(e) = self.done.take() {
            let _ = e.synchronize();
        }
        // SAFETY: allocated by malloc_host in `new`, freed once.
        let _ = unsafe { cudarc::driver::result::free_host(self.ptr.cast()) };
    }
}

// SAFETY: the flag's memory is owned by this value alone and only written by copies it queues.
unsafe impl Send for HostFlag {}

/// One replica's communicator, its all-reduce stream, gradient buckets and stop flag (kept from step to step).
pub struct Replica {
    comm: Comm,
    be: Arc<CudaBackend>,
    /// The stream the collectives run on, beside the compute stream.
    comm_stream: Arc<CudaStream>,
    overlap: bool,
    bucket_bytes: usize,
    buckets: Vec<Bucket>,
    /// Parameter k → (bucket, offset).
    slot: Vec<(usize, usize)>,
    /// [local loss, stop] before the all-reduce, [Σ losses, stops] after.
    scalars: CudaSlice<f32>,
    flag: HostFlag,
    /// Whether the bucket layout has been logged.
    logged: bool,
}

impl Replica {
    /// The replica of `comm`'s rank for `trainer` (on `comm`'s device); `bucket_bytes` caps a bucket, `overlap`
    /// starts a bucket's all-reduce as soon as its gradients are final.
    pub fn new(trainer: &Trainer, comm: Comm, bucket_bytes: usize, overlap: bool) -> Result<Replica> {
        let be = comm.backend().clone();
        let sizes: Vec<usize> = trainer.params.tensors().iter().map(Tensor::numel).collect();
        let mut slot = vec![(0, 0); sizes.len()];
        let mut buckets = Vec::new();
        for (i, members) in plan_buckets(&sizes, bucket_bytes).into_iter().enumerate() {
            let mut params = Vec::new();
            let mut len = 0;
            for k in members {
                slot[k] = (i, len);
                params.push((k, len));
                len += sizes[k];
            }
            let buf = Tensor::zeros(&[len], &trainer.device)?;
            buckets.push(Bucket { waiting: params.len(), params, buf });
        }
        let comm_stream = be.context().new_stream()?;
        let scalars = be.stream().alloc_zeros::<f32>(2)?;
        let flag = HostFlag::new(&be)?;
        Ok(Replica { comm, be, comm_stream, overlap, bucket_bytes, buckets, slot, scalars, flag, logged: false })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn world(&self) -> usize {
        self.comm.world()
    }

    /// Gradient k (final) into its bucket, on the compute stream.
    fn pack(&mut self, k: usize, g: &Tensor) -> Result<()> {
        let (b, off) = self.slot[k];
        let src = cuda(g)?.f32("all-reduce")?;
        let Storage::Cuda(dst) = self.buckets[b].buf.storage_mut()? else { unreachable!("made on the device") };
        let len = src.len();
        self.be.stream().memcpy_dtod(src, &mut dst.f32_mut("all-reduce")?.slice_mut(off..off + len))?;
        self.buckets[b].waiting -= 1;
        Ok(())
    }

    /// All-reduce bucket `b` on the collective stream, after what the compute stream has queued so far.
    fn launch(&mut self, b: usize) -> Result<()> {
        self.comm_stream.wait(&self.be.stream().record_event(None)?)?;
        let Storage::Cuda(buf) = self.buckets[b].buf.storage_mut()? else { unreachable!("made on the device") };
        self.comm.all_reduce_sum_on(buf.f32_mut("all-reduce")?, &self.comm_stream)
    }

    /// One step of this replica on its slice of the global `batch` (see the module docs), queued through
    /// `trainer` (its `report` gives the step's mean loss and global norm). `stop`: this process asks to stop.
    /// With `agree`, returns whether any rank asked to stop in the step before this one (every rank gets the same
    /// answer at the same step; reading it waits for that step), else false.
    pub fn step(&mut self, t: &mut Trainer, batch: &Batch, stop: bool, agree: bool) -> Result<bool> {
        let (rank, world) = (self.comm.rank(), self.comm.world());
        let [b, c, h, w] = batch.shape;
        if !b.is_multiple_of(world) {
            return Err(Error::msg(format!("the global batch of {b} does not split evenly over {world} GPUs")));
        }
        let (per, len) = (b / world, c * h * w);
        let x0 = Tensor::from_vec(batch.images[rank * per * len..(rank + 1) * per * len].to_vec(), &[per, c, h, w])?
            .to_device(&t.device)?;
        let draws = replica_batch(t, &x0, b, rank)?;

        for bucket in &mut self.buckets {
            bucket.waiting = bucket.params.len();
        }
        let (mut next, mut during) = (0, 0);
        let overlap = self.overlap;
        let (loss, mut grads) = t.batch_loss_and_grads(draws, rank * per, &mut |k, g| {
            if overlap {
                self.pack(k, g)?;
                while next < self.buckets.len() && self.buckets[next].waiting == 0 {
                    self.launch(next)?;
                    next += 1;
                    during += 1;
                }
            }
            Ok(())
        })?;
        if !overlap {
            for (k, g) in grads.iter().enumerate() {
                self.pack(k, g)?;
            }
        }
        while next < self.buckets.len() {
            if self.buckets[next].waiting != 0 {
                return Err(Error::msg("data parallel: a gradient never became final in the backward pass"));
            }
            self.launch(next)?;
            next += 1;
        }
        // The loss and the stop flag, last, on the same stream (every rank issues the collectives in one order).
        let stream = self.be.stream().clone();
        stream.memcpy_dtod(cuda(&loss)?.f32("loss")?, &mut self.scalars.slice_mut(0..1))?;
        stream.memcpy_htod(&[f32::from(u8::from(stop))], &mut self.scalars.slice_mut(1..2))?;
        self.comm_stream.wait(&stream.record_event(None)?)?;
        self.comm.all_reduce_sum_on(&mut self.scalars, &self.comm_stream)?;
        stream.wait(&self.comm_stream.record_event(None)?)?;

        // Σ/N back into the gradients; the mean loss; then the Trainer's own optimizer step.
        let scale = 1.0 / world as f32;
        for bucket in &self.buckets {
            let mean = if world > 1 { bucket.buf.scale(scale)? } else { bucket.buf.clone() };
            let m = cuda(&mean)?.f32("all-reduce")?;
            for &(k, off) in &bucket.params {
                let Storage::Cuda(g) = grads[k].storage_mut()? else { unreachable!("checked when packed") };
                let n = g.len();
                stream.memcpy_dtod(&m.slice(off..off + n), g.f32_mut("all-reduce")?)?;
            }
        }
        let mut sum = self.be.empty(1)?;
        stream.memcpy_dtod(&self.scalars.slice(0..1), sum.f32_mut("loss")?)?;
        let sum = Tensor::from_storage(Storage::Cuda(sum), &[1])?;
        let mean_loss = if world > 1 { sum.scale(scale)? } else { sum };
        t.queue_update(&mean_loss, &mut grads)?;

        if !self.logged && rank == 0 {
            self.logged = true;
            let sizes: Vec<String> = self.buckets.iter().map(|b| (b.buf.numel() * 4).to_string()).collect();
            let total: usize = self.buckets.iter().map(|b| b.buf.numel() * 4).sum();
            // The last bucket is complete only with the backward pass's last gradient: it cannot overlap.
            let overlapped = if during == self.buckets.len() { during - 1 } else { during };
            eprintln!(
                "all-reduce per step: {total} bytes of f32 gradients in {} bucket(s) of [{}] bytes (cap {}), \
                 {overlapped} overlapped with the backward pass",
                self.buckets.len(),
                sizes.join(", "),
                self.bucket_bytes
            );
        }
        if t.step == t.config.train.steps {
            self.check_identical(t)?;
        }
        if !agree {
            return Ok(false);
        }
        // The previous step's agreed flag (waits for that step only), then this step's copy.
        let previous = self.flag.read()?;
        self.flag.copy_from(&self.scalars, &stream)?;
        Ok(previous)
    }
}

impl Replica {
    /// At the run's last step: this replica's weights, EMA and Adam moments must be rank 0's, bit for bit (a
    /// digest broadcast from rank 0; one host read of the state per run).
    fn check_identical(&self, t: &Trainer) -> Result<()> {
        let (m, v, _) = t.adam.state();
        let state = t.params.tensors().iter().chain(t.ema.shadow()).chain(m).chain(v);
        let mut digest = Fnv::default();
        for x in state {
            x.to_vec()?.iter().for_each(|f| digest.add(&f.to_bits().to_le_bytes()));
        }
        let stream = self.be.stream();
        let mut buf = stream.clone_htod(&digest.0.to_le_bytes())?;
        self.comm.broadcast_bytes(&mut buf, 0)?;
        let theirs = u64::from_le_bytes(stream.clone_dtoh(&buf)?.try_into().expect("8 bytes"));
        if theirs != digest.0 {
            return Err(Error::msg(format!(
                "data parallel: after step {} the state of rank {} differs from rank 0's (digest {:016x} vs {theirs:016x})",
                t.step,
                self.comm.rank(),
                digest.0
            )));
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plan_buckets;

    #[test]
    fn buckets_take_parameters_in_reverse_order_up_to_the_cap() {
        // Sizes in floats; a cap of 40 bytes is 10 floats.
        let sizes = [3, 4, 12, 2, 5, 1];
        let b = plan_buckets(&sizes, 40);
        // 1+5+2 = 8 ≤ 10, then 12 alone (over the cap), then 4+3.
        assert_eq!(b, vec![vec![5, 4, 3], vec![2], vec![1, 0]]);
        // Every parameter exactly once.
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..sizes.len()).collect::<Vec<_>>());
        assert_eq!(plan_buckets(&sizes, 1 << 20), vec![vec![5, 4, 3, 2, 1, 0]]);
        assert!(plan_buckets(&[], 40).is_empty());
    }
}
