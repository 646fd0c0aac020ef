//! CUDA arm of linear: GEMMs (cuBLAS or kernels/gemm.cu) and the bias rows of kernels/linear.cu.

use crate::backend::cuda::CudaStorage;
use crate::backend::cuda_gemm::{gemm, Gemm, GemmImpl};
use crate::backend::cuda_gemm_bf16::gemm_bf16;
use crate::backend::kernels::int;
use crate::backend::DType;
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

// The bf16 arm: the GEMMs on tensor cores (cuBLAS GemmEx, else kernels/gemm_bf16.cu).

/// y (bf16) = x (bf16) · bf16(w)ᵀ + b, accumulated in f32 onto the f32 bias rows and rounded once.
pub(super) fn forward_bf16(
    x: &CudaStorage,
    w: &CudaStorage,
    b: Option<&CudaStorage>,
    n: usize,
    fan_in: usize,
    fan_out: usize,
) -> Result<CudaStorage> {
    const OP: &str = "linear bf16";
    let be = x.backend();
    let w16 = be.round_bf16(w.f32(OP)?)?;
    let mut y32 = be.zeros(n * fan_out)?;
    if let (Some(b), true) = (b, n > 0) {
        // Reads fan_out floats of b, writes n·fan_out of y32.
        linear_bias_rows_f32(be, grid_1d(n * fan_out), b, &mut y32, int(OP, n * fan_out)?, fan_out as i32)?;
    }
    gemm_bf16(be, &Gemm::new(n, fan_out, fan_in, false, true).accumulate(), x.bf16(OP)?, &w16, y32.f32_mut(OP)?)?;
    Ok(CudaStorage::from_bf16(be.round_bf16(y32.f32(OP)?)?, be))
}

/// [dx (bf16), dw (f32)] where asked for.
pub(super) fn backward_bf16(
    x: &CudaStorage,
    w: &CudaStorage,
    gy: &CudaStorage,
    n: usize,
    fan_in: usize,
    fan_out: usize,
    needs: [bool; 2],
) -> Result<[Option<CudaStorage>; 2]> {
    const OP: &str = "linear bf16 backward";
    let be = x.backend();
    let dx = if needs[0] {
        let w16 = be.round_bf16(w.f32(OP)?)?;
        let mut dx = be.zeros_as(DType::Bf16, n * fan_in)?;
        gemm_bf16(be, &Gemm::new(n, fan_in, fan_out, false, false), gy.bf16(OP)?, &w16, dx.bf16_mut(OP)?)?;
        Some(dx)
    } else {
        None
    };
    let dw = if needs[1] {
        let mut dw = be.zeros(fan_out * fan_in)?;
        gemm_bf16(be, &Gemm::new(fan_out, fan_in, n, true, false), gy.bf16(OP)?, x.bf16(OP)?, dw.f32_mut(OP)?)?;
        Some(dw)
    } else {
        None
    };
    Ok([dx, dw])
}
