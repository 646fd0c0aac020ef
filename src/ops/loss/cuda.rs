//! CUDA arm of the MSE loss: the forward is the backend's device sum (`cuda_reduce`, mode Σ(x − y)²), the
//! backward one elementwise kernel (kernels/reduce.cu).

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

kernels! {
    /// out = 2 (pred − target) / n_f · g[0].
    fn loss_mse_backward_f32(pred: &CudaStorage, target: &CudaStorage, g: &CudaStorage, out: &mut CudaStorage, n: i32,
        n_f: f32);
}

/// d loss / d pred for the one-element output gradient `g`.
pub(super) fn backward(p: &CudaStorage, t: &CudaStorage, g: &CudaStorage) -> Result<CudaStorage> {
    let be = p.backend();
    let n = p.len();
    let (n_i, n_f) = (i32::try_from(n).map_err(|_| Error::shape("mse", "too many elements for the kernels"))?, n as f32);
    let mut out = be.empty(n)?;
    // Reads n floats of pred and target and g[0]; writes n floats.
    loss_mse_backward_f32(be, grid_1d(n), p, t, g, &mut out, n_i, n_f)?;
    Ok(out)
}
