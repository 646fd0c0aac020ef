//! CUDA arm of dropout (kernels/dropout.cu): the mask regenerated from the Philox draw, one thread per 4 elements.

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::rng::Philox;
use crate::{Error, Result};

kernels! {
    /// y = x · mask / (1 − p) with the mask of the draw (seed, offset).
    fn dropout_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32, p: f32, seed: u64, offset: u64);
    /// gx = gy · mask / (1 − p), the same mask.
    fn dropout_backward(gy: &CudaStorage, gx: &mut CudaStorage, n: i32, p: f32, seed: u64, offset: u64);
}

/// Which kernel `apply_mask` runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pass {
    Forward,
    Backward,
}

/// x · mask / (1 − p) on the device.
pub(super) fn apply_mask(pass: Pass, x: &CudaStorage, p: f32, draw: Philox) -> Result<CudaStorage> {
    let be = x.backend();
    let n = x.len();
    if n > i32::MAX as usize {
        return Err(Error::shape("dropout", format!("{n} elements do not fit the kernel's int count")));
    }
    let mut y = be.empty(n)?;
    let kernel = match pass {
        Pass::Forward => dropout_forward,
        Pass::Backward => dropout_backward,
    };
    // The kernel reads n floats of x and writes n floats of y.
    kernel(be, grid_1d(n.div_ceil(4)), x, &mut y, n as i32, p, draw.seed(), draw.offset())?;
    Ok(y)
}
