//! CUDA arms of the optimizer (kernels/adam.cu, kernels/reduce.cu): one fused Adam/AdamW (+ EMA) launch per
//! parameter tensor, the EMA alone, and gradient-norm clipping whose only host traffic is the f64 norm (its sums
//! are the backend's `cuda_reduce`).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr};

use crate::backend::cuda::{CudaBackend, CudaStorage, PinnedHost};
use crate::backend::cuda_reduce::{finish, launch_partials, partial_blocks, Mode};
use crate::backend::kernels::{blocks, grid_1d, kernels};
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

kernels! {
    /// Adam/AdamW on p, m, v, and the EMA shadow unless `ema` is null, one thread per element.
    fn adam_ema_step_f32(
        p: &mut CudaStorage, g: &CudaStorage, m: &mut CudaStorage, v: &mut CudaStorage, ema: Option<&mut CudaStorage>,
        n: i32, lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, decoupled: i32, step_size: f32,
        bc2_sqrt: f32, ema_decay: f32,
    );
    /// ema −= rate · (ema − p).
    fn adam_ema_update_f32(ema: &mut CudaStorage, p: &CudaStorage, n: i32, rate: f32);
    /// x *= s in place.
    fn adam_scale_inplace_f32(x: &mut CudaStorage, n: i32, s: f32);
    /// The multi-tensor step, launch 1: Σg² partials of every tensor of `table` (one block each).
    fn optim_sumsq_partials_f32(table: &CudaSlice<u64>, tensors: i32, partial: &mut CudaSlice<f64>);
    /// Launch 2, one block: the norm, the finiteness check and the step's scalars into `state`.
    fn optim_step_state_f64(
        partial: &CudaSlice<f64>, parts: i32, loss: &CudaStorage, state: &mut CudaSlice<f64>, max_norm: f32,
        base_lr: f32, warmup_steps: i64, beta1: f32, beta2: f32, nan_at_step: i64,
    );
    /// Launch 3: clip · Adam/AdamW · EMA over every tensor of `table`, scalars from `state`.
    fn optim_adam_ema_f32(
        table: &CudaSlice<u64>, tensors: i32, state: &CudaSlice<f64>, beta1: f32, beta2: f32, eps: f32,
        weight_decay: f32, decoupled: i32, ema_rate: f32,
    );
}

/// The per-step scalars of one Adam update, as the CPU path computes them.
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamScalars {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    /// EMA decay when an EMA shadow is updated in the same pass.
    pub ema_decay: f32,
}

fn mismatch() -> Error {
    Error::DeviceMismatch { op: "optimizer", devices: "cpu, cuda".into() }
}

fn cuda_mut(t: &mut Tensor) -> Result<&mut CudaStorage> {
    match t.storage_mut()? {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(mismatch()),
    }
}

fn cuda_ref(t: &Tensor) -> Result<&CudaStorage> {
    match t.storage() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(mismatch()),
    }
}

fn len_i32(n: usize) -> Result<i32> {
    i32::try_from(n)
        .map_err(|_| Error::msg(format!("optimizer: a tensor of {n} elements is too large for the kernels")))
}

/// p, m, v (and the EMA shadow) updated in place for one parameter tensor.
pub(super) fn adam_step(
    p: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    ema: Option<&mut Tensor>,
    s: &AdamScalars,
) -> Result<()> {
    let n = p.numel();
    if n == 0 {
        return Ok(());
    }
    let n_i = len_i32(n)?;
    let (p, g, m, v) = (cuda_mut(p)?, cuda_ref(g)?, cuda_mut(m)?, cuda_mut(v)?);
    let ema = match ema {
        Some(e) => Some(cuda_mut(e)?),
        None => None,
    };
    let be = g.backend().clone();
    // p, g, m, v (and ema) all hold n floats (shapes checked by the caller); one thread per element.
    adam_ema_step_f32(
        &be,
        grid_1d(n),
        p,
        g,
        m,
        v,
        ema,
        n_i,
        s.lr,
        s.beta1,
        s.beta2,
        s.eps,
        s.weight_decay,
        i32::from(s.decoupled),
        s.step_size,
        s.bc2_sqrt,
        s.ema_decay,
    )
}

/// shadow −= rate · (shadow − p).
pub(super) fn ema_update(shadow: &mut Tensor, p: &Tensor, rate: f32) -> Result<()> {
    let n = p.numel();
    if n == 0 {
        return Ok(());
    }
    let n_i = len_i32(n)?;
    let (s, p) = (cuda_mut(shadow)?, cuda_ref(p)?);
    let be = p.backend().clone();
    // Both hold n floats.
    adam_ema_update_f32(&be, grid_1d(n), s, p, n_i, rate)
}

/// √(Σ g²) over every gradient, in f64: partials of each tensor into one buffer, one finishing block, and the
/// one f64 copied to the host.
pub(super) fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let storages = grads.iter().map(cuda_ref).collect::<Result<Vec<_>>>()?;
    let Some(first) = storages.first() else { return Ok(0.0) };
    let be = first.backend().clone();
    let total_parts: usize = storages.iter().map(|s| partial_blocks(s.len())).sum();
    let mut partial = be.stream().alloc_zeros::<f64>(total_parts)?;
    let mut offset = 0;
    for s in &storages {
        if !s.is_empty() {
            launch_partials(s, None, Mode::SumSq, &mut partial, offset)?;
        }
        offset += partial_blocks(s.len());
    }
    let (_, total) = finish(&be, &partial, 1.0)?;
    let host = be.stream().clone_dtoh(&total)?;
    Ok(host[0].sqrt())
}

/// The device address of each tensor's f32 buffer, after making it unshared (copy-on-write, as an in-place update
/// would).
pub(super) fn addresses(tensors: &mut [Tensor]) -> Result<Vec<u64>> {
    tensors
        .iter_mut()
        .map(|t| {
            let c = cuda_mut(t)?;
            let be = c.backend().clone();
            Ok(address(c.f32("optimizer")?, &be))
        })
        .collect()
}

/// g *= coef in place.
pub(super) fn scale_in_place(g: &mut Tensor, coef: f32) -> Result<()> {
    let n = g.numel();
    if n == 0 {
        return Ok(());
    }
    let n_i = len_i32(n)?;
    let c = cuda_mut(g)?;
    let be = c.backend().clone();
    // n floats, in place.
    adam_scale_inplace_f32(&be, grid_1d(n), c, n_i, coef)
}

/// Fields per tensor of the multi-tensor table (kernels/adam.cu `OPT_*`): p, g, m, v, EMA (0: none), n, first
/// sum-of-squares block, first Adam block.
const FIELDS: usize = 8;
/// Elements per block of the Adam grid (`OPT_ADAM_CHUNK`).
const ADAM_CHUNK: usize = 2048;

/// The device step state (kernels/adam.cu `ST_*`), as doubles.
pub(super) mod state {
    pub const STEPS: usize = 0;
    pub const BAD_STEP: usize = 1;
    pub const BAD_WHAT: usize = 2;
    pub const BAD_VALUE: usize = 3;
    pub const LOSS: usize = 4;
    pub const NORM: usize = 5;
    pub const LEN: usize = 16;
}

/// The multi-tensor training step (clip, Adam/AdamW with warm-up, EMA over every parameter in three launches; see
/// kernels/adam.cu). A device pointer table rather than one flat parameter buffer: the parameters, moments and
/// EMA keep their own allocations (checkpoints, sampling and the tape use them as tensors), and the gradients come
/// out of the backward pass one tensor each; the table is uploaded only when a pointer changes (a gradient
/// allocated at another address), so a steady-state step uploads nothing. The per-step scalars and the step count
/// live in `state` on the device, which the kernels advance themselves: a captured step replays as it is.
pub(super) struct MultiTensor {
    be: Arc<CudaBackend>,
    /// What the device table holds (rows of `FIELDS`, then the row of block totals).
    host_table: Vec<u64>,
    table: CudaSlice<u64>,
    partial: CudaSlice<f64>,
    state: CudaSlice<f64>,
    /// The state as of the last step, copied back asynchronously after each step.
    stats: PinnedHost,
    /// `host_table` is not on the device yet (it changed during a graph capture, which cannot upload it).
    table_pending: bool,
}

/// Raw device address of a buffer (its lifetime is the caller's: every buffer in the table is owned by the
/// trainer, or is a gradient that lives until the step's launches are queued; frees are stream-ordered).
fn address<T>(s: &CudaSlice<T>, be: &CudaBackend) -> u64 {
    s.device_ptr(be.stream()).0
}

impl MultiTensor {
    /// The table's shape for tensors of `sizes` elements, and a state whose step count is `steps`.
    pub(super) fn new(be: &Arc<CudaBackend>, sizes: &[usize], steps: u64) -> Result<MultiTensor> {
        let mut host_table = vec![0u64; (sizes.len() + 1) * FIELDS];
        let (mut parts, mut adam_blocks) = (0usize, 0usize);
        for (k, &n) in sizes.iter().enumerate() {
            let row = &mut host_table[k * FIELDS..(k + 1) * FIELDS];
            row[5] = n as u64;
            row[6] = parts as u64;
            row[7] = adam_blocks as u64;
            parts += partial_blocks(n);
            adam_blocks += n.div_ceil(ADAM_CHUNK);
        }
        let last = sizes.len() * FIELDS;
        host_table[last + 6] = parts as u64;
        host_table[last + 7] = adam_blocks as u64;
        if parts > i32::MAX as usize || adam_blocks > i32::MAX as usize {
            return Err(Error::msg("optimizer: too many parameters for the multi-tensor kernels"));
        }
        let table = be.stream().clone_htod(&host_table)?;
        let partial = be.stream().alloc_zeros::<f64>(parts)?;
        let mut init = vec![0f64; state::LEN];
        init[state::STEPS] = steps as f64;
        let state = be.stream().clone_htod(&init)?;
        let stats = PinnedHost::new(be, state::LEN)?;
        Ok(MultiTensor { be: be.clone(), host_table, table, partial, state, stats, table_pending: false })
    }

    fn tensors(&self) -> usize {
        self.host_table.len() / FIELDS - 1
    }

    /// Queue one step: the pointer table (uploaded if it changed), the three launches, and the async copy of the
    /// state into pinned memory. Nothing waits for the device.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &mut self,
        params: &mut [Tensor],
        grads: &[Tensor],
        m: &mut [Tensor],
        v: &mut [Tensor],
        ema: Option<&mut [Tensor]>,
        loss: &Tensor,
        s: &FusedScalars,
    ) -> Result<()> {
        let count = self.tensors();
        ensure_shape!(params.len() == count, "optimizer", "{} tensors for a table of {count}", params.len());
        let be = self.be.clone();
        let mut ema = ema;
        let mut scratch = self.host_table.clone();
        // Shapes were checked by the caller (Adam's checks); the counts index below.
        let grads_ok = grads.len() == count && m.len() == count && v.len() == count;
        ensure_shape!(grads_ok, "optimizer", "{} grads, {} m, {} v for {count} params", grads.len(), m.len(), v.len());
        for k in 0..count {
            let row = k * FIELDS;
            ensure_shape!(
                params[k].numel() as u64 == self.host_table[row + 5],
                "optimizer",
                "param {k}: {} elements, the table has {}",
                params[k].numel(),
                self.host_table[row + 5]
            );
            scratch[row] = address(cuda_mut(&mut params[k])?.f32("adam")?, &be);
            scratch[row + 1] = address(cuda_ref(&grads[k])?.f32("adam")?, &be);
            scratch[row + 2] = address(cuda_mut(&mut m[k])?.f32("adam")?, &be);
            scratch[row + 3] = address(cuda_mut(&mut v[k])?.f32("adam")?, &be);
            scratch[row + 4] = match ema.as_deref_mut() {
                Some(e) => address(cuda_mut(&mut e[k])?.f32("adam")?, &be),
                None => 0,
            };
        }
        if scratch != self.host_table {
            // Only when an address changed (first step, or a gradient allocated elsewhere): staged by the driver,
            // no host wait. While a CUDA graph is being captured the copy waits until the capture is over
            // (`upload_pending_table`): the gradients are then the graph's own allocations, whose addresses hold
            // for the graph's life, so the table uploaded once serves every replay.
            self.host_table.copy_from_slice(&scratch);
            self.table_pending = true;
        }
        if self.table_pending && !be.capturing() {
            be.stream().memcpy_htod(&self.host_table, &mut self.table)?;
            self.table_pending = false;
        }
        let tensors = count as i32;
        let parts = self.partial.len();
        if parts > 0 {
            // Block b reads the gradient of the tensor whose sum-of-squares range holds b; writes partial[b].
            optim_sumsq_partials_f32(&be, blocks((parts as u32, 1, 1), 256), &self.table, tensors, &mut self.partial)?;
        }
        // One block: reads the partials and loss[0], reads and writes the state.
        optim_step_state_f64(
            &be,
            blocks((1, 1, 1), 256),
            &self.partial,
            parts as i32,
            cuda_ref(loss)?,
            &mut self.state,
            s.max_norm,
            s.base_lr,
            s.warmup_steps,
            s.beta1,
            s.beta2,
            s.nan_at_step,
        )?;
        let adam_blocks = self.host_table[count * FIELDS + 7] as u32;
        if adam_blocks > 0 {
            // Block b updates ADAM_CHUNK elements of p, m, v (and the EMA) of the tensor whose range holds b.
            optim_adam_ema_f32(
                &be,
                blocks((adam_blocks, 1, 1), 256),
                &self.table,
                tensors,
                &self.state,
                s.beta1,
                s.beta2,
                s.eps,
                s.weight_decay,
                i32::from(s.decoupled),
                s.ema_rate,
            )?;
        }
        self.stats.copy_from(&self.state)
    }

    /// After a capture: the table of the captured step's addresses to the device (before the graph's first replay).
    pub(super) fn upload_pending_table(&mut self) -> Result<()> {
        if std::mem::take(&mut self.table_pending) {
            self.be.stream().memcpy_htod(&self.host_table, &mut self.table)?;
        }
        Ok(())
    }

    /// The state as of the last queued step: waits for the device (the only host sync of the step's path).
    pub(super) fn read_state(&self) -> Result<Vec<f64>> {
        self.stats.read()
    }
}

/// The constants of a multi-tensor step (the per-step ones are computed on the device).
#[derive(Clone, Copy, Debug)]
pub(super) struct FusedScalars {
    pub max_norm: f32,
    pub base_lr: f32,
    pub warmup_steps: i64,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    /// 1 − EMA decay (unused without an EMA).
    pub ema_rate: f32,
    /// The step whose loss is replaced by NaN (test hook; 0: none).
    pub nan_at_step: i64,
}
