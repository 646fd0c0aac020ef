//! CUDA arm of SiLU (kernels/silu.cu), on f32 or bf16 storage (the output has the input's dtype).

use half::bf16;

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::backend::DType;
use crate::Result;

use cudarc::driver::CudaSlice;

kernels! {
    /// y = x · σ(x), n elements.
    fn silu_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32);
    /// gx = gy · σ(x) · (1 + x · (1 − σ(x))), n elements.
    fn silu_backward(x: &CudaStorage, gy: &CudaStorage, gx: &mut CudaStorage, n: i32);
    /// silu_forward on bf16 storage (f32 maths).
    fn silu_forward_bf16(x: &CudaSlice<bf16>, y: &mut CudaSlice<bf16>, n: i32);
    /// silu_backward on bf16 storage (f32 maths).
    fn silu_backward_bf16(x: &CudaSlice<bf16>, gy: &CudaSlice<bf16>, gx: &mut CudaSlice<bf16>, n: i32);
}

pub(super) fn forward(x: &CudaStorage) -> Result<CudaStorage> {
    let (be, n) = (x.backend(), x.len());
    let mut y = be.empty_as(x.dtype(), n)?;
    // Reads n elements of x, writes n of y.
    match x.dtype() {
        DType::F32 => silu_forward(be, grid_1d(n), x, &mut y, int("silu", n)?)?,
        DType::Bf16 => silu_forward_bf16(be, grid_1d(n), x.bf16("silu")?, y.bf16_mut("silu")?, int("silu", n)?)?,
    }
    Ok(y)
}

pub(super) fn backward(x: &CudaStorage, gy: &CudaStorage) -> Result<CudaStorage> {
    const OP: &str = "silu backward";
    let (be, n) = (x.backend(), x.len());
    let mut gx = be.empty_as(x.dtype(), n)?;
    // Reads n elements of x and gy, writes n of gx.
    match x.dtype() {
        DType::F32 => silu_backward(be, grid_1d(n), x, gy, &mut gx, int(OP, n)?)?,
        DType::Bf16 => silu_backward_bf16(be, grid_1d(n), x.bf16(OP)?, gy.bf16(OP)?, gx.bf16_mut(OP)?, int(OP, n)?)?,
    }
    Ok(gx)
}
