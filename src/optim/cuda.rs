//! CUDA arms of the optimizer (kernels/adam.cu, kernels/reduce.cu): one fused Adam/AdamW (+ EMA) launch per
//! parameter tensor, the EMA alone, and gradient-norm clipping whose only host traffic is the f64 norm.

use cudarc::driver::PushKernelArg;

use crate::backend::cuda::{cuda_err, CudaBackend, CudaStorage};
use crate::backend::Storage;
use crate::ops::reduce::{finish, launch_partials, partial_blocks, Mode};
use crate::{Error, Result, Tensor};

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

fn cuda_mut(t: &mut Tensor) -> Result<&mut CudaStorage> {
    match t.storage_mut() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg("optimizer: tensors on different devices")),
    }
}

fn cuda_ref(t: &Tensor) -> Result<&CudaStorage> {
    match t.storage() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg("optimizer: tensors on different devices")),
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
    let f = be.function("adam_ema_step_f32")?;
    let null: u64 = 0; // the kernel skips the EMA for a null pointer
    let decoupled = i32::from(s.decoupled);
    let mut b = be.stream().launch_builder(&f);
    b.arg(&mut p.buf).arg(&g.buf).arg(&mut m.buf).arg(&mut v.buf);
    match ema {
        Some(e) => b.arg(&mut e.buf),
        None => b.arg(&null),
    };
    b.arg(&n_i)
        .arg(&s.lr)
        .arg(&s.beta1)
        .arg(&s.beta2)
        .arg(&s.eps)
        .arg(&s.weight_decay)
        .arg(&decoupled)
        .arg(&s.step_size)
        .arg(&s.bc2_sqrt)
        .arg(&s.ema_decay);
    // SAFETY: p, g, m, v (and ema) all hold n floats (shapes checked by the caller); one thread per element.
    unsafe { b.launch(CudaBackend::grid_1d(n)) }.map_err(cuda_err)?;
    Ok(())
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
    let f = be.function("adam_ema_update_f32")?;
    // SAFETY: both hold n floats.
    unsafe {
        be.stream().launch_builder(&f).arg(&mut s.buf).arg(&p.buf).arg(&n_i).arg(&rate).launch(CudaBackend::grid_1d(n))
    }
    .map_err(cuda_err)?;
    Ok(())
}

/// √(Σ g²) over every gradient, in f64: partials of each tensor into one buffer, one finishing block, and the
/// one f64 copied to the host.
pub(super) fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let storages = grads.iter().map(cuda_ref).collect::<Result<Vec<_>>>()?;
    let Some(first) = storages.first() else { return Ok(0.0) };
    let be = first.backend().clone();
    let total_parts: usize = storages.iter().map(|s| partial_blocks(s.len())).sum();
    let mut partial = be.stream().alloc_zeros::<f64>(total_parts).map_err(cuda_err)?;
    let mut offset = 0;
    for s in &storages {
        if !s.is_empty() {
            launch_partials(s, None, Mode::SumSq, &mut partial, offset)?;
        }
        offset += partial_blocks(s.len());
    }
    let (_, total) = finish(&be, &partial, 1.0)?;
    let host = be.stream().clone_dtoh(&total).map_err(cuda_err)?;
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
    let f = be.function("adam_scale_inplace_f32")?;
    // SAFETY: n floats, in place.
    unsafe { be.stream().launch_builder(&f).arg(&mut c.buf).arg(&n_i).arg(&coef).launch(CudaBackend::grid_1d(n)) }
        .map_err(cuda_err)?;
    Ok(())
}
