//! CUDA arm of sum/mean: the forward is the backend's device sum (`cuda_reduce`); the backward fills the input
//! shape with the scaled output gradient (kernels/reduce.cu).

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

kernels! {
    /// out[i] = g[0] · factor for i < n.
    fn reduce_fill_f32(g: &CudaStorage, out: &mut CudaStorage, n: i32, factor: f32);
}

/// n copies of factor · g[0].
pub(super) fn fill(g: &CudaStorage, n: usize, factor: f32, op: &'static str) -> Result<CudaStorage> {
    let be = g.backend();
    let n_i = i32::try_from(n).map_err(|_| Error::shape(op, "too many elements for the kernels"))?;
    let mut out = be.empty(n)?;
    // Reads g[0], writes n floats.
    reduce_fill_f32(be, grid_1d(n), g, &mut out, n_i, factor)?;
    Ok(out)
}
