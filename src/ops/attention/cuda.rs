//! CUDA attention: the four products as batched GEMMs (cuBLAS, or kernels/gemm.cu without it) and the row-wise
//! softmax and its backward from kernels/attention.cu. P [B, T, T] is materialised (33 MB for the cifar10 U-Net's
//! 16×16 level at batch 128) and kept for the backward, as on the CPU.

use cudarc::driver::LaunchConfig;

use crate::backend::cuda::CudaStorage;
use crate::backend::cuda_gemm::{gemm, Gemm, GemmImpl};
use crate::backend::kernels::kernels;
use crate::{Error, Result};

kernels! {
    /// In place: each of `rows` rows of T floats → softmax(scale · (row − max)); one warp per row.
    fn attention_softmax_f32(s: &mut CudaStorage, rows: i32, t: i32, scale: f32);
    /// In place: d ← p ⊙ (d − rowsum(d ⊙ p)) · scale per row.
    fn attention_softmax_backward_f32(p: &CudaStorage, d: &mut CudaStorage, rows: i32, t: i32, scale: f32);
}

/// Rows per 256-thread block in the softmax kernels (one warp each).
const ROWS_PER_BLOCK: usize = 8;

fn rows_cfg(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn ints(b: usize, t: usize) -> Result<(i32, i32)> {
    let rows = i32::try_from(b * t).map_err(|_| Error::shape("attention", "too many rows for the kernels"))?;
    Ok((rows, t as i32))
}

/// (O [B, C, T], P [B, T, T]).
pub(super) fn forward(
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    b: usize,
    c: usize,
    t: usize,
) -> Result<(CudaStorage, CudaStorage)> {
    let be = q.backend();
    let mut probs = be.empty(b * t * t)?;
    let mut out = if t == 0 { be.zeros(b * c * t)? } else { be.empty(b * c * t)? };
    if b == 0 || t == 0 {
        return Ok((out, probs));
    }
    // S = Qᵀ K (unscaled; the softmax applies 1/√C after subtracting the row max, as the CPU reference).
    gemm(be, &Gemm::new(t, t, c, true, false).batched(b), q.f32("attention")?, k.f32("attention")?, probs.f32_mut("attention")?, GemmImpl::Auto)?;
    let (rows, t_i) = ints(b, t)?;
    let scale = 1.0 / (c as f32).sqrt();
    // In place on the B·T rows of T floats of probs.
    attention_softmax_f32(be, rows_cfg(b * t), &mut probs, rows, t_i, scale)?;
    // O = V Pᵀ.
    gemm(be, &Gemm::new(c, t, t, false, true).batched(b), v.f32("attention")?, probs.f32("attention")?, out.f32_mut("attention")?, GemmImpl::Auto)?;
    Ok((out, probs))
}

/// [dQ, dK, dV], each where `needs` asks.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    probs: &CudaStorage,
    g: &CudaStorage,
    b: usize,
    c: usize,
    t: usize,
    needs: [bool; 3],
) -> Result<[Option<CudaStorage>; 3]> {
    let be = q.backend();
    let fresh = || if t == 0 || b == 0 { be.zeros(b * c * t) } else { be.empty(b * c * t) };
    let mut dv = None;
    if needs[2] {
        let mut d = fresh()?;
        gemm(be, &Gemm::new(c, t, t, false, false).batched(b), g.f32("attention")?, probs.f32("attention")?, d.f32_mut("attention")?, GemmImpl::Auto)?;
        dv = Some(d);
    }
    if !(needs[0] || needs[1]) {
        return Ok([None, None, dv]);
    }
    // dP = dOᵀ V, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √C in place.
    let mut ds = be.empty(b * t * t)?;
    if b > 0 && t > 0 {
        gemm(be, &Gemm::new(t, t, c, true, false).batched(b), g.f32("attention")?, v.f32("attention")?, ds.f32_mut("attention")?, GemmImpl::Auto)?;
        let (rows, t_i) = ints(b, t)?;
        let scale = 1.0 / (c as f32).sqrt();
        // Reads probs and updates ds in place, B·T rows of T floats each.
        attention_softmax_backward_f32(be, rows_cfg(b * t), probs, &mut ds, rows, t_i, scale)?;
    }
    let mut dq = None;
    if needs[0] {
        // dQ = K dSᵀ.
        let mut d = fresh()?;
        gemm(be, &Gemm::new(c, t, t, false, true).batched(b), k.f32("attention")?, ds.f32("attention")?, d.f32_mut("attention")?, GemmImpl::Auto)?;
        dq = Some(d);
    }
    let mut dk = None;
    if needs[1] {
        // dK = Q dS.
        let mut d = fresh()?;
        gemm(be, &Gemm::new(c, t, t, false, false).batched(b), q.f32("attention")?, ds.f32("attention")?, d.f32_mut("attention")?, GemmImpl::Auto)?;
        dk = Some(d);
    }
    Ok([dq, dk, dv])
}
