//! Reductions over all elements to a one-element tensor of shape []: `sum` and `mean`. The backward broadcasts
//! the output gradient (divided by the count for `mean`) back to the input shape.
//!
//! On CUDA the result stays on the device (the backend's `cuda_reduce`: per-block partials in f64, then one block
//! adds them in a fixed order), so a loss costs no host round trip until someone reads it.

use crate::autograd::{record, Var};
use crate::backend::cuda_reduce::{device_sum, Mode};
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

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
        Storage::Cuda(c) => Tensor::from_storage(Storage::Cuda(cuda::fill(c, shape.iter().product(), factor, op)?), shape),
    }
}
