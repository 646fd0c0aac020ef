//! CUDA arms of the optimizer (kernels/adam.cu, kernels/reduce.cu): one fused Adam/AdamW (+ EMA) launch per
//! parameter tensor, the EMA alone, and gradient-norm clipping whose only host traffic is the f64 norm (its sums
//! are the backend's `cuda_reduce`).

use crate::backend::cuda::CudaStorage;
use crate::backend::cuda_reduce::{finish, launch_partials, partial_blocks, Mode};
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::Storage;
use crate::{Error, Result, Tensor};

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
