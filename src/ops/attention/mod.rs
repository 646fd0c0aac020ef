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
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

pub mod check;
pub(crate) mod cuda;
pub(crate) mod flash;

pub fn attention(q: &Var, k: &Var, v: &Var) -> Result<Var> {
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
