//! CUDA arm of ReLU (kernels/relu.cu).

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::Result;

kernels! {
    /// y = max(x, 0) (NaN stays NaN), n elements.
    fn relu_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32);
}

pub(super) fn forward(x: &CudaStorage) -> Result<CudaStorage> {
    let (be, n) = (x.backend(), x.len());
    let mut y = be.empty(n)?;
    // Reads n floats of x, writes n of y.
    relu_forward(be, grid_1d(n), x, &mut y, int("relu", n)?)?;
    Ok(y)
}
