//! CUDA arm of SiLU (kernels/silu.cu).

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::Result;

kernels! {
    /// y = x · σ(x), n elements.
    fn silu_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32);
    /// gx = gy · σ(x) · (1 + x · (1 − σ(x))), n elements.
    fn silu_backward(x: &CudaStorage, gy: &CudaStorage, gx: &mut CudaStorage, n: i32);
}

pub(super) fn forward(x: &CudaStorage) -> Result<CudaStorage> {
    let (be, n) = (x.backend(), x.len());
    let mut y = be.empty(n)?;
    // Reads n floats of x, writes n of y.
    silu_forward(be, grid_1d(n), x, &mut y, int("silu", n)?)?;
    Ok(y)
}

pub(super) fn backward(x: &CudaStorage, gy: &CudaStorage) -> Result<CudaStorage> {
    let (be, n) = (x.backend(), x.len());
    let mut gx = be.empty(n)?;
    // Reads n floats of x and gy, writes n of gx.
    silu_backward(be, grid_1d(n), x, gy, &mut gx, int("silu backward", n)?)?;
    Ok(gx)
}
