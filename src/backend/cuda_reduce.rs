//! Device sums in f64 (kernels/reduce.cu): per-block partials, then one block adds them in a fixed order, so a
//! sum is deterministic and stays on the device until someone reads it. Shared by `ops::reduce` (sum, mean),
//! `ops::loss` (MSE) and `optim` (the global gradient norm, which puts many tensors' partials in one buffer).

use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::cuda::{CudaBackend, CudaStorage};
use super::kernels::{blocks, reduce_finish_f64, reduce_partial_f32};
use crate::{ensure_shape, Error, Result};

/// What a sum adds up (the kernel's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Σ x
    Sum = 0,
    /// Σ (x − y)²
    SqDiff = 1,
    /// Σ x²
    SumSq = 2,
}

/// Partial sums (blocks) the first stage uses for n elements: about 4 elements per thread, at most 1024 blocks.
pub fn partial_blocks(n: usize) -> usize {
    n.div_ceil(256 * 4).clamp(1, 1024)
}

/// First stage: the partials of one tensor into `partial[offset..offset + partial_blocks(x.len())]`.
pub fn launch_partials(
    x: &CudaStorage,
    y: Option<&CudaStorage>,
    mode: Mode,
    partial: &mut CudaSlice<f64>,
    offset: usize,
) -> Result<()> {
    let n = x.len();
    let n_i =
        i32::try_from(n).map_err(|_| Error::msg(format!("reduction over {n} elements: too many for the kernels")))?;
    if let Some(y) = y {
        ensure_shape!(y.len() == n, "reduce", "operands of {} and {} elements", n, y.len());
    }
    let parts = partial_blocks(n);
    let mut view = partial.slice_mut(offset..offset + parts);
    // Reads n floats of x (and y, same length; x stands in when there is no y), writes `parts` doubles.
    reduce_partial_f32(x.backend(), blocks((parts as u32, 1, 1), 256), x, y.unwrap_or(x), n_i, mode as i32, &mut view)
}

/// Second stage: (scale · Σ partial as one f32 on the device, the unscaled f64 total on the device).
pub fn finish(be: &Arc<CudaBackend>, partial: &CudaSlice<f64>, scale: f64) -> Result<(CudaStorage, CudaSlice<f64>)> {
    let mut out = be.empty(1)?;
    let mut total = be.stream().alloc_zeros::<f64>(1)?;
    // One block reads `parts` doubles and writes out[0] and total[0].
    reduce_finish_f64(be, blocks((1, 1, 1), 256), partial, partial.len() as i32, scale, &mut out, &mut total)?;
    Ok((out, total))
}

/// scale · Σ over one tensor (see `Mode`), as a one-element device buffer, plus the f64 total on the device.
pub fn device_sum(
    x: &CudaStorage,
    y: Option<&CudaStorage>,
    mode: Mode,
    scale: f64,
) -> Result<(CudaStorage, CudaSlice<f64>)> {
    let be = x.backend();
    let mut partial = be.stream().alloc_zeros::<f64>(partial_blocks(x.len()))?;
    launch_partials(x, y, mode, &mut partial, 0)?;
    finish(be, &partial, scale)
}

#[cfg(test)]
mod tests {
    use super::partial_blocks;

    #[test]
    fn partial_blocks_stay_in_the_finish_kernels_reach() {
        assert_eq!(partial_blocks(0), 1);
        assert_eq!(partial_blocks(1), 1);
        assert_eq!(partial_blocks(1024), 1);
        assert_eq!(partial_blocks(1025), 2);
        assert_eq!(partial_blocks(128 * 3 * 32 * 32), 384);
        assert_eq!(partial_blocks(1 << 30), 1024);
    }
}
