//! Device sums in f64 (kernels/reduce.cu): per-block partials, then one block adds them in a fixed order, so a
//! sum is deterministic and stays on the device until someone reads it. Shared by `ops::reduce` (sum, mean),
//! `ops::loss` (MSE) and `optim` (the global gradient norm, which puts many tensors' partials in one buffer).

use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::cuda::{CudaBackend, CudaStorage};
use super::kernels::{
    blocks, grid_1d, reduce_bias_finish_f32, reduce_bias_partial_f32, reduce_finish_f64, reduce_partial_f32,
};
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
    // SAFETY: the kernel writes total[0].
    let mut total = unsafe { be.stream().alloc::<f64>(1) }?;
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
    // SAFETY: block b of the first stage writes partial[b], for every b.
    let mut partial = unsafe { be.stream().alloc::<f64>(partial_blocks(x.len())) }?;
    launch_partials(x, y, mode, &mut partial, 0)?;
    finish(be, &partial, scale)
}

/// Splits of each channel's sum in `bias_sum`: enough blocks for about four per SM, each split at least 4096
/// elements (a split of 256 threads then reads 16 values per thread). Returns (splits, chunk) with
/// splits · chunk ≥ per_channel > (splits − 1) · chunk.
pub fn bias_splits(len: usize, per_channel: usize, sm_count: usize) -> (usize, usize) {
    let want = (4 * sm_count).div_ceil(len.max(1));
    let splits = want.clamp(1, (per_channel / 4096).max(1));
    let chunk = per_channel.div_ceil(splits).max(1);
    (per_channel.div_ceil(chunk).max(1), chunk)
}

/// out[j] = Σ of g's rows r ≡ j (mod len), rows of `inner` elements: the gradient of a bias broadcast over the
/// other dims (conv [N, C, H, W] → [C] with inner = H·W; linear [N, F] → [F] with inner = 1). Two levels over
/// len × splits blocks, then the splits added in order: deterministic.
pub fn bias_sum(g: &CudaStorage, inner: usize, len: usize) -> Result<CudaStorage> {
    let be = g.backend();
    let n = g.len();
    let int = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("bias gradient: {v} is too large")));
    let (n_i, inner_i, len_i) = (int(n)?, int(inner.max(1))?, int(len)?);
    if len == 0 || n == 0 {
        return be.zeros(len);
    }
    let rows = n / inner.max(1);
    let per_channel = rows.div_ceil(len) * inner.max(1);
    let (splits, chunk) = bias_splits(len, per_channel, be.sm_count());
    let grid = blocks((len as u32, splits as u32, 1), 256);
    // Block (j, s) reads split s of channel j's elements of g and writes dst[j · splits + s]: every element.
    let mut partial = be.empty(len * splits)?;
    reduce_bias_partial_f32(be, grid, g, &mut partial, n_i, inner_i, len_i, chunk as i64)?;
    if splits == 1 {
        return Ok(partial);
    }
    let mut out = be.empty(len)?;
    // Reads len · splits partials, writes len floats.
    reduce_bias_finish_f32(be, grid_1d(len), &partial, &mut out, len_i, splits as i32)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{bias_splits, partial_blocks};

    #[test]
    fn bias_splits_cover_each_channel_without_empty_splits() {
        for &(len, per, sms) in &[(128, 131072, 132), (3, 2048, 132), (512, 128, 132), (1, 1, 132), (64, 9000, 1)] {
            let (splits, chunk) = bias_splits(len, per, sms);
            assert!(
                splits >= 1 && splits * chunk >= per && (splits - 1) * chunk < per,
                "{len} {per}: {splits}×{chunk}"
            );
        }
        // cifar10's first conv bias at batch 128: 128 channels of 131072 values in 5 splits (640 blocks).
        assert_eq!(bias_splits(128, 131072, 132).0, 5);
        // A linear bias over 128 rows is one block per output.
        assert_eq!(bias_splits(512, 128, 132).0, 1);
    }

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
