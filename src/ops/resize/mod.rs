//! Inference-only bilinear resize, exactly `F.interpolate(x, size=(H_out, W_out), mode='bilinear',
//! align_corners=False)` as pytorch-fid calls it (no antialiasing): for each output row,
//! src = (dst + 0.5) · (H_in / H_out) − 0.5 clamped at 0, h0 = ⌊src⌋, h1 = min(h0 + 1, H_in − 1), λ = src − h0,
//! and likewise for columns; y = (1−λh)((1−λw) x[h0,w0] + λw x[h0,w1]) + λh((1−λw) x[h1,w0] + λw x[h1,w1]),
//! all in f32 as PyTorch's CPU kernel computes it. No backward is recorded.

use rayon::prelude::*;

use crate::backend::Storage;
use crate::{ensure_shape, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// (index0, index1, λ0, λ1) of one output coordinate along an axis.
pub fn source_index(dst: usize, in_size: usize, out_size: usize) -> (usize, usize, f32, f32) {
    let scale = in_size as f32 / out_size as f32;
    let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
    let i0 = (src as usize).min(in_size - 1);
    let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// [N, C, H, W] → [N, C, out_h, out_w].
pub fn resize_bilinear_forward(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let op = "resize_bilinear";
    let (n, c, h, w) = x.dims4(op)?;
    ensure_shape!(h > 0 && w > 0 && out_h > 0 && out_w > 0, op, "empty size: {:?} → {out_h}×{out_w}", x.shape());
    let out_shape = [n, c, out_h, out_w];
    let storage = match x.storage() {
        Storage::Cpu(xs) => {
            let rows: Vec<_> = (0..out_h).map(|d| source_index(d, h, out_h)).collect();
            let cols: Vec<_> = (0..out_w).map(|d| source_index(d, w, out_w)).collect();
            let mut y = vec![0.0f32; n * c * out_h * out_w];
            y.par_chunks_mut(out_h * out_w).zip(xs.par_chunks(h * w)).for_each(|(yp, xp)| {
                for (yr, &(h0, h1, lh0, lh1)) in yp.chunks_exact_mut(out_w).zip(&rows) {
                    let (r0, r1) = (&xp[h0 * w..(h0 + 1) * w], &xp[h1 * w..(h1 + 1) * w]);
                    for (o, &(w0, w1, lw0, lw1)) in yr.iter_mut().zip(&cols) {
                        *o = lh0 * (lw0 * r0[w0] + lw1 * r0[w1]) + lh1 * (lw0 * r1[w0] + lw1 * r1[w1]);
                    }
                }
            });
            Storage::Cpu(y)
        }
        Storage::Cuda(xc) => Storage::Cuda(cuda::forward(xc, n * c, [h, w], [out_h, out_w])?),
    };
    Tensor::from_storage(storage, &out_shape)
}
