//! CUDA arm of linear: GEMMs (cuBLAS or kernels/gemm.cu) and the bias rows of kernels/linear.cu.

use crate::backend::cuda::CudaStorage;
use crate::backend::cuda_gemm::{gemm, Gemm, GemmImpl};
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

kernels! {
    /// y[i] = b[i % out] for i < n (the bias rows the GEMM then accumulates onto).
    fn linear_bias_rows_f32(b: &CudaStorage, y: &mut CudaStorage, n: i32, out: i32);
}

/// y = x · wᵀ (+ b): the bias rows first, then the GEMM accumulating onto them.
pub(super) fn forward(
    x: &CudaStorage,
    w: &CudaStorage,
    b: Option<&CudaStorage>,
    n: usize,
    fan_in: usize,
    fan_out: usize,
    imp: GemmImpl,
) -> Result<CudaStorage> {
    let be = x.backend();
    let mut y = be.empty(n * fan_out)?;
    let mut g = Gemm::new(n, fan_out, fan_in, false, true);
    if let Some(b) = b {
        let total =
            i32::try_from(n * fan_out).map_err(|_| Error::shape("linear", "output too large for the kernels"))?;
        // Reads fan_out floats of b, writes n·fan_out of y.
        linear_bias_rows_f32(be, grid_1d(n * fan_out), b, &mut y, total, fan_out as i32)?;
        g = g.accumulate();
    }
    gemm(be, &g, x.f32("linear")?, w.f32("linear")?, y.f32_mut("linear")?, imp)?;
    Ok(y)
}

/// [dx, dw], each where `needs` asks.
pub(super) fn backward(
    x: &CudaStorage,
    w: &CudaStorage,
    gy: &CudaStorage,
    n: usize,
    fan_in: usize,
    fan_out: usize,
    needs: [bool; 2],
) -> Result<[Option<CudaStorage>; 2]> {
    let be = x.backend();
    let dx = if needs[0] {
        let mut dx = be.empty(n * fan_in)?;
        gemm(be, &Gemm::new(n, fan_in, fan_out, false, false), gy.f32("linear")?, w.f32("linear")?, dx.f32_mut("linear")?, GemmImpl::Auto)?;
        Some(dx)
    } else {
        None
    };
    let dw = if needs[1] {
        // A zero-length reduction (n = 0) must still give zeros.
        let mut dw = if n == 0 { be.zeros(fan_out * fan_in)? } else { be.empty(fan_out * fan_in)? };
        gemm(be, &Gemm::new(fan_out, fan_in, n, true, false), gy.f32("linear")?, x.f32("linear")?, dw.f32_mut("linear")?, GemmImpl::Auto)?;
        Some(dw)
    } else {
        None
    };
    Ok([dx, dw])
}
