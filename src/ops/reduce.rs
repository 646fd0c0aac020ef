//! Reductions over all elements to a one-element tensor of shape []: `sum` and `mean`. The backward broadcasts
//! the output gradient (divided by the count for `mean`) back to the input shape.
//!
//! On CUDA the result stays on the device (kernels/reduce.cu: per-block partials in f64, then one block adds
//! them in a fixed order), so a loss costs no host round trip until someone reads it. `device_sum` is shared
//! with the MSE loss and gradient clipping.

use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::autograd::{record, Var};
use crate::backend::cuda::{cuda_err, CudaBackend, CudaStorage};
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

pub fn sum(x: &Var) -> Result<Var> {
    let y = reduce(x.value(), 1.0, "sum")?;
    let shape = x.shape().to_vec();
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(broadcast(g, &shape, 1.0, "sum")?)])))
}

pub fn mean(x: &Var) -> Result<Var> {
    let n = x.value().numel();
    ensure_shape!(n > 0, "mean", "mean of an empty tensor {:?}", x.shape());
    let y = reduce(x.value(), n as f64, "mean")?;
    let shape = x.shape().to_vec();
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(broadcast(g, &shape, 1.0 / n as f32, "mean")?)])))
}

/// Σ x / divisor as a [] tensor on x's device, summed in f64 (so large tensors lose no precision).
fn reduce(x: &Tensor, divisor: f64, op: &'static str) -> Result<Tensor> {
    match x.storage() {
        Storage::Cpu(v) => Ok(Tensor::scalar((v.iter().map(|&a| a as f64).sum::<f64>() / divisor) as f32)),
        Storage::Cuda(c) => {
            let (out, _) =
                device_sum(c, None, Mode::Sum, 1.0 / divisor).map_err(|e| Error::msg(format!("{op}: {e}")))?;
            Tensor::from_storage(Storage::Cuda(out), &[])
        }
    }
}

/// A tensor of `shape` filled with `factor` times the single value of `g`.
fn broadcast(g: &Tensor, shape: &[usize], factor: f32, op: &'static str) -> Result<Tensor> {
    ensure_shape!(g.numel() == 1, op, "output gradient {:?} is not one element", g.shape());
    match g.storage() {
        Storage::Cpu(v) => Tensor::from_vec(vec![v[0] * factor; shape.iter().product()], shape),
        Storage::Cuda(c) => {
            let be = c.backend();
            let n: usize = shape.iter().product();
            let n_i = i32::try_from(n).map_err(|_| Error::shape(op, "too many elements for the kernels"))?;
            let mut out = be.empty(n)?;
            let f = be.function("reduce_fill_f32")?;
            // SAFETY: reads g[0], writes n floats.
            unsafe {
                be.stream()
                    .launch_builder(&f)
                    .arg(&c.buf)
                    .arg(&mut out.buf)
                    .arg(&n_i)
                    .arg(&factor)
                    .launch(CudaBackend::grid_1d(n))
            }
            .map_err(cuda_err)?;
            Tensor::from_storage(Storage::Cuda(out), shape)
        }
    }
}

/// What `device_sum` adds up (the kernel's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Σ x
    Sum = 0,
    /// Σ (x − y)²
    SqDiff = 1,
    /// Σ x²
    SumSq = 2,
}

/// Partial sums (blocks) the first stage uses for n elements: about 4 elements per thread, at most 1024 blocks.
pub(crate) fn partial_blocks(n: usize) -> usize {
    n.div_ceil(256 * 4).clamp(1, 1024)
}

/// First stage: the partials of one tensor into `partial[offset..offset + partial_blocks(x.len())]`.
pub(crate) fn launch_partials(
    x: &CudaStorage,
    y: Option<&CudaStorage>,
    mode: Mode,
    partial: &mut CudaSlice<f64>,
    offset: usize,
) -> Result<()> {
    let be = x.backend();
    let n = x.len();
    let n_i =
        i32::try_from(n).map_err(|_| Error::msg(format!("reduction over {n} elements: too many for the kernels")))?;
    if let Some(y) = y {
        ensure_shape!(y.len() == n, "reduce", "operands of {} and {} elements", n, y.len());
    }
    let blocks = partial_blocks(n);
    let mode_i = mode as i32;
    let f = be.function("reduce_partial_f32")?;
    let mut view = partial.slice_mut(offset..offset + blocks);
    let cfg =
        cudarc::driver::LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: reads n floats of x (and y, same length; x stands in when there is no y), writes `blocks` doubles.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&x.buf)
            .arg(&y.unwrap_or(x).buf)
            .arg(&n_i)
            .arg(&mode_i)
            .arg(&mut view)
            .launch(cfg)
    }
    .map_err(cuda_err)?;
    Ok(())
}

/// Second stage: (scale · Σ partial as one f32 on the device, the unscaled f64 total on the device).
pub(crate) fn finish(
    be: &std::sync::Arc<CudaBackend>,
    partial: &CudaSlice<f64>,
    scale: f64,
) -> Result<(CudaStorage, CudaSlice<f64>)> {
    let mut out = be.empty(1)?;
    let mut total = be.stream().alloc_zeros::<f64>(1).map_err(cuda_err)?;
    let parts = partial.len() as i32;
    let f = be.function("reduce_finish_f64")?;
    let cfg = cudarc::driver::LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: one block reads `parts` doubles and writes out[0] and total[0].
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(partial)
            .arg(&parts)
            .arg(&scale)
            .arg(&mut out.buf)
            .arg(&mut total)
            .launch(cfg)
    }
    .map_err(cuda_err)?;
    Ok((out, total))
}

/// scale · Σ over one tensor (see `Mode`), as a one-element device buffer, plus the f64 total on the device.
pub(crate) fn device_sum(
    x: &CudaStorage,
    y: Option<&CudaStorage>,
    mode: Mode,
    scale: f64,
) -> Result<(CudaStorage, CudaSlice<f64>)> {
    let be = x.backend();
    let mut partial = be.stream().alloc_zeros::<f64>(partial_blocks(x.len())).map_err(cuda_err)?;
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
