//! The unfused bf16 attention, for the shapes the fused kernels (`flash.rs`) do not take (`flash_supports`): q, k,
//! v (and dO) are widened to f32 (exact), the f32 path of `cuda.rs` runs (P materialised; the backward recomputes
//! it), and the results are rounded to bf16. lse [B, T] is the row log-sum-exp of the scaled scores, as the fused
//! kernel saves it, so either backward takes either forward's output.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use super::cuda;
use crate::backend::cuda::CudaBackend;
use crate::backend::cuda_gemm::{gemm, Gemm, GemmImpl};
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::Result;

kernels! {
    /// lse[r] = log Σ_j exp(scale · s[r, j]), one thread per row of t floats.
    fn attention_unfused_row_lse_f32(s: &CudaSlice<f32>, lse: &mut CudaSlice<f32>, rows: i32, t: i32, scale: f32);
}

const OP: &str = "attention bf16";

/// out [B, C, T] bf16 and the row log-sum-exp lse [B, T] f32.
pub(crate) fn forward_bf16(
    be: &Arc<CudaBackend>,
    q: &CudaSlice<bf16>,
    k: &CudaSlice<bf16>,
    v: &CudaSlice<bf16>,
    b: usize,
    c: usize,
    t: usize,
) -> Result<(CudaSlice<bf16>, CudaSlice<f32>)> {
    let (q32, k32, v32) = (be.widen_bf16(q)?, be.widen_bf16(k)?, be.widen_bf16(v)?);
    let (out, _probs) = cuda::forward(&q32, &k32, &v32, b, c, t)?;
    let mut lse = be.zeros(b * t)?;
    if b * t > 0 {
        let mut s = be.empty(b * t * t)?;
        let (qs, ks) = (q32.f32(OP)?, k32.f32(OP)?);
        gemm(be, &Gemm::new(t, t, c, true, false).batched(b), qs, ks, s.f32_mut(OP)?, GemmImpl::Auto)?;
        let scale = 1.0 / (c as f32).sqrt();
        // Thread r reads row r of s (t floats) and writes lse[r].
        let (rows, t_i) = (int(OP, b * t)?, int(OP, t)?);
        attention_unfused_row_lse_f32(be, grid_1d(b * t), s.f32(OP)?, lse.f32_mut(OP)?, rows, t_i, scale)?;
    }
    Ok((be.round_bf16(out.f32(OP)?)?, lse.into_f32(OP)?))
}

/// (dq, dk, dv) bf16 [B, C, T]; the stand-in recomputes P in f32 (out and lse are not needed for that).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_bf16(
    be: &Arc<CudaBackend>,
    q: &CudaSlice<bf16>,
    k: &CudaSlice<bf16>,
    v: &CudaSlice<bf16>,
    _out: &CudaSlice<bf16>,
    _lse: &CudaSlice<f32>,
    dout: &CudaSlice<bf16>,
    b: usize,
    c: usize,
    t: usize,
) -> Result<(CudaSlice<bf16>, CudaSlice<bf16>, CudaSlice<bf16>)> {
    let (q32, k32, v32, g32) = (be.widen_bf16(q)?, be.widen_bf16(k)?, be.widen_bf16(v)?, be.widen_bf16(dout)?);
    let (_, probs) = cuda::forward(&q32, &k32, &v32, b, c, t)?;
    let [dq, dk, dv] = cuda::backward(&q32, &k32, &v32, &probs, &g32, b, c, t, [true; 3])?;
    let round = |d: Option<crate::backend::cuda::CudaStorage>| be.round_bf16(d.expect("asked for").f32(OP)?);
    Ok((round(dq)?, round(dk)?, round(dv)?))
}
