//! Single-head self-attention of the DDPM U-Net, fused into one op, in channel-major layout so it follows 1×1
//! convs directly: q, k, v are [B, C, T] (T = H·W tokens). Per batch item, with Q, K, V the C×T matrices:
//!
//!   S = Qᵀ K / √C  (T×T),   P = softmax over each row of S,   O = V Pᵀ  (C×T).
//!
//! Backward (P saved from the forward):
//!   dV = dO P,   dP = dOᵀ V,   dS = P ⊙ (dP − rowsum(dP ⊙ P)),   dQ = K dSᵀ / √C,   dK = Q dS / √C.

use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda::CudaStorage;
use crate::backend::{DType, Storage};
use crate::{ensure_shape, Error, Result, Tensor};

pub mod check;
pub(crate) mod cuda;
pub(crate) mod flash;
mod unfused_bf16;

/// The unfused bf16 path's kernel declarations (checked against the PTX with the others).
pub(crate) use unfused_bf16::KERNELS as UNFUSED_BF16_KERNELS;

pub fn attention(q: &Var, k: &Var, v: &Var) -> Result<Var> {
    if q.value().dtype() == DType::Bf16 {
        let (out, lse) = forward_bf16(q.value(), k.value(), v.value())?;
        let (qv, kv, vv, ov) = (q.value().clone(), k.value().clone(), v.value().clone(), out.clone());
        return Ok(record(out, &[q, k, v], move |g, _| {
            let (dq, dk, dv) = backward_bf16(&qv, &kv, &vv, &ov, &lse, g)?;
            Ok(vec![Some(dq), Some(dk), Some(dv)])
        }));
    }
    let (out, probs) = forward(q.value(), k.value(), v.value())?;
    let (qv, kv, vv) = (q.value().clone(), k.value().clone(), v.value().clone());
    Ok(record(out, &[q, k, v], move |g, needs| {
        let (dq, dk, dv) = backward(&qv, &kv, &vv, &probs, g, [needs[0], needs[1], needs[2]])?;
        Ok(vec![dq, dk, dv])
    }))
}

/// Check that q, k, v are equal [B, C, T] shapes on one device, and return (B, C, T).
fn dims(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(usize, usize, usize)> {
    let [b, c, t] = q.shape()[..] else {
        return Err(Error::shape("attention", format!("expected q of shape [B, C, T], got {:?}", q.shape())));
    };
    ensure_shape!(
        k.shape() == q.shape() && v.shape() == q.shape(),
        "attention",
        "q {:?}, k {:?}, v {:?} must have one shape",
        q.shape(),
        k.shape(),
        v.shape()
    );
    ensure_shape!(c > 0, "attention", "q {:?} has no channels", q.shape());
    Tensor::same_device("attention", &[q, k, v])?;
    Ok((b, c, t))
}

/// With at least one batch item per thread the batch loop fills the pool; otherwise let each GEMM fan out.
fn gemm_threads(batch: usize) -> Threads {
    if batch >= rayon::current_num_threads() {
        Threads::One
    } else {
        Threads::All
    }
}

/// Softmax of each length-`t` row of `s` in place, after scaling by `scale` (max subtracted for stability).
fn softmax_rows(s: &mut [f32], t: usize, scale: f32) {
    for row in s.chunks_exact_mut(t) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0f32;
        for x in row.iter_mut() {
            *x = ((*x - max) * scale).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The output [B, C, T] and the attention probabilities P [B, T, T] (kept for the backward).
pub fn forward(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, c, t) = dims(q, k, v)?;
    if let (Storage::Cuda(qs), Storage::Cuda(ks), Storage::Cuda(vs)) = (q.storage(), k.storage(), v.storage()) {
        let (out, probs) = cuda::forward(qs, ks, vs, b, c, t)?;
        return Ok((
            Tensor::from_storage(Storage::Cuda(out), &[b, c, t])?,
            Tensor::from_storage(Storage::Cuda(probs), &[b, t, t])?,
        ));
    }
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs)) = (q.storage(), k.storage(), v.storage()) else {
        return Err(Tensor::device_mismatch("attention", &[q, k, v]));
    };
    let (ct, tt) = (c * t, t * t);
    let mut out = vec![0.0f32; b * ct];
    let mut probs = vec![0.0f32; b * tt];
    if ct > 0 && tt > 0 {
        let scale = 1.0 / (c as f32).sqrt();
        let threads = gemm_threads(b);
        out.par_chunks_mut(ct).zip(probs.par_chunks_mut(tt)).enumerate().for_each(|(i, (o, p))| {
            let (qb, kb, vb) = (&qs[i * ct..][..ct], &ks[i * ct..][..ct], &vs[i * ct..][..ct]);
            // S = Qᵀ K (unscaled; the scale is applied inside the softmax).
            cpu::gemm(p, Mat::new(qb, c, t).t(), Mat::new(kb, c, t), false, threads);
            softmax_rows(p, t, scale);
            // O = V Pᵀ.
            cpu::gemm(o, Mat::new(vb, c, t), Mat::new(p, t, t).t(), false, threads);
        });
    }
    Ok((Tensor::from_vec(out, &[b, c, t])?, Tensor::from_vec(probs, &[b, t, t])?))
}

/// The three bf16 CUDA buffers of q, k, v (or an error naming `op`).
fn bf16_operands<'a>(op: &str, ts: [&'a Tensor; 3]) -> Result<[&'a CudaStorage; 3]> {
    let one = |t: &'a Tensor| match t.storage() {
        Storage::Cuda(c) if c.dtype() == DType::Bf16 => Ok(c),
        _ => Err(Error::msg(format!("{op}: q, k, v must all be bf16 CUDA tensors"))),
    };
    Ok([one(ts[0])?, one(ts[1])?, one(ts[2])?])
}

/// bf16 attention (CUDA only): the output [B, C, T] bf16 and the row log-sum-exp [B, T] f32 that the backward
/// recomputes P from (scores and P never stored).
pub fn forward_bf16(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, c, t) = dims(q, k, v)?;
    let [qs, ks, vs] = bf16_operands("attention", [q, k, v])?;
    let be = qs.backend();
    let (qb, kb, vb) = (qs.bf16("attention")?, ks.bf16("attention")?, vs.bf16("attention")?);
    // The fused kernels where they take the shape, else the unfused path (same outputs, P materialised).
    let (out, lse) = if flash::flash_supports(c, t) {
        flash::flash_forward_bf16(be, qb, kb, vb, b, c, t)?
    } else {
        unfused_bf16::forward_bf16(be, qb, kb, vb, b, c, t)?
    };
    Ok((
        Tensor::from_storage(Storage::Cuda(CudaStorage::from_bf16(out, be)), &[b, c, t])?,
        Tensor::from_storage(Storage::Cuda(CudaStorage::from_slice(lse, be)), &[b, t])?,
    ))
}

/// (dq, dk, dv) bf16 of `forward_bf16` given dO `g` (bf16).
pub fn backward_bf16(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "attention backward";
    let (b, c, t) = dims(q, k, v)?;
    ensure_shape!(g.shape() == q.shape(), OP, "dO {:?} for output {:?}", g.shape(), q.shape());
    let [qs, ks, vs] = bf16_operands(OP, [q, k, v])?;
    let [os, gs, _] = bf16_operands(OP, [out, g, g])?;
    let Storage::Cuda(ls) = lse.storage() else {
        return Err(Tensor::device_mismatch(OP, &[q, lse]));
    };
    let be = qs.backend();
    let (qb, kb, vb, ob, gb) = (qs.bf16(OP)?, ks.bf16(OP)?, vs.bf16(OP)?, os.bf16(OP)?, gs.bf16(OP)?);
    let (dq, dk, dv) = if flash::flash_supports(c, t) {
        flash::flash_backward_bf16(be, qb, kb, vb, ob, ls.f32(OP)?, gb, b, c, t)?
    } else {
        unfused_bf16::backward_bf16(be, qb, kb, vb, ob, ls.f32(OP)?, gb, b, c, t)?
    };
    let wrap = |d| Tensor::from_storage(Storage::Cuda(CudaStorage::from_bf16(d, be)), &[b, c, t]);
    Ok((wrap(dq)?, wrap(dk)?, wrap(dv)?))
}

/// One optional gradient buffer split into per-batch slices (`None` for each item when not needed).
fn batch_slices(buf: &mut [f32], needed: bool, b: usize, ct: usize) -> Vec<Option<&mut [f32]>> {
    if needed {
        buf.chunks_mut(ct).map(Some).collect()
    } else {
        (0..b).map(|_| None).collect()
    }
}

/// Gradients (dq, dk, dv) for those flagged in `needs`, from the saved probabilities `probs` [B, T, T].
pub fn backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    g: &Tensor,
    needs: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (b, c, t) = dims(q, k, v)?;
    ensure_shape!(g.shape() == q.shape(), "attention backward", "dO {:?} for output {:?}", g.shape(), q.shape());
    ensure_shape!(probs.shape() == [b, t, t], "attention backward", "P {:?} for T = {t}", probs.shape());
    if let (Storage::Cuda(qs), Storage::Cuda(ks), Storage::Cuda(vs), Storage::Cuda(ps), Storage::Cuda(gs)) =
        (q.storage(), k.storage(), v.storage(), probs.storage(), g.storage())
    {
        let [dq, dk, dv] = cuda::backward(qs, ks, vs, ps, gs, b, c, t, needs)?;
        let wrap = |s: Option<_>| s.map(|s| Tensor::from_storage(Storage::Cuda(s), &[b, c, t])).transpose();
        return Ok((wrap(dq)?, wrap(dk)?, wrap(dv)?));
    }
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(ps), Storage::Cpu(gs)) =
        (q.storage(), k.storage(), v.storage(), probs.storage(), g.storage())
    else {
        return Err(Tensor::device_mismatch("attention backward", &[q, k, v, probs, g]));
    };
    let (ct, tt) = (c * t, t * t);
    let alloc = |needed: bool| vec![0.0f32; if needed { b * ct } else { 0 }];
    let (mut dq, mut dk, mut dv) = (alloc(needs[0]), alloc(needs[1]), alloc(needs[2]));
    if ct > 0 && b > 0 {
        let scale = 1.0 / (c as f32).sqrt();
        let threads = gemm_threads(b);
        let items: Vec<_> = batch_slices(&mut dq, needs[0], b, ct)
            .into_iter()
            .zip(batch_slices(&mut dk, needs[1], b, ct))
            .zip(batch_slices(&mut dv, needs[2], b, ct))
            .enumerate()
            .collect();
        items.into_par_iter().for_each(|(i, ((dq, dk), dv))| {
            let (qb, kb, vb, gb) = (&qs[i * ct..][..ct], &ks[i * ct..][..ct], &vs[i * ct..][..ct], &gs[i * ct..][..ct]);
            let p = &ps[i * tt..][..tt];
            if let Some(dv) = dv {
                cpu::gemm(dv, Mat::new(gb, c, t), Mat::new(p, t, t), false, threads);
            }
            if dq.is_none() && dk.is_none() {
                return;
            }
            // dP = dOᵀ V, then turned into dS / √C in place.
            let mut ds = vec![0.0f32; tt];
            cpu::gemm(&mut ds, Mat::new(gb, c, t).t(), Mat::new(vb, c, t), false, threads);
            for (ds_row, p_row) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)) {
                let dot: f32 = ds_row.iter().zip(p_row).map(|(d, p)| d * p).sum();
                ds_row.iter_mut().zip(p_row).for_each(|(d, p)| *d = p * (*d - dot) * scale);
            }
            if let Some(dq) = dq {
                cpu::gemm(dq, Mat::new(kb, c, t), Mat::new(&ds, t, t).t(), false, threads);
            }
            if let Some(dk) = dk {
                cpu::gemm(dk, Mat::new(qb, c, t), Mat::new(&ds, t, t), false, threads);
            }
        });
    }
    let wrap = |buf: Vec<f32>, needed: bool| needed.then(|| Tensor::from_vec(buf, &[b, c, t])).transpose();
    Ok((wrap(dq, needs[0])?, wrap(dk, needs[1])?, wrap(dv, needs[2])?))
}
