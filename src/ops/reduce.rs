//! Reductions over all elements to a one-element tensor of shape []: `sum` and `mean`. The backward broadcasts
//! the output gradient (divided by the count for `mean`) back to the input shape.

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

pub fn sum(x: &Var) -> Result<Var> {
    let y = Tensor::scalar(sum_f64(x.value(), "sum")? as f32);
    let shape = x.shape().to_vec();
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(broadcast(g, &shape, 1.0, "sum")?)])))
}

pub fn mean(x: &Var) -> Result<Var> {
    let n = x.value().numel();
    ensure_shape!(n > 0, "mean", "mean of an empty tensor {:?}", x.shape());
    let y = Tensor::scalar((sum_f64(x.value(), "mean")? / n as f64) as f32);
    let shape = x.shape().to_vec();
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(broadcast(g, &shape, 1.0 / n as f32, "mean")?)])))
}

/// Σ x in f64 (so large tensors lose no precision).
fn sum_f64(x: &Tensor, op: &'static str) -> Result<f64> {
    match x.storage() {
        Storage::Cpu(v) => Ok(v.iter().map(|&a| a as f64).sum()),
        Storage::Cuda(_) => Err(Error::Unsupported { op, device: "cuda".into() }),
    }
}

/// A tensor of `shape` filled with `factor` times the single value of `g`.
fn broadcast(g: &Tensor, shape: &[usize], factor: f32, op: &'static str) -> Result<Tensor> {
    match g.storage() {
        Storage::Cpu(v) => {
            ensure_shape!(v.len() == 1, op, "output gradient {:?} is not one element", g.shape());
            Tensor::from_vec(vec![v[0] * factor; shape.iter().product()], shape)
        }
        Storage::Cuda(_) => Err(Error::Unsupported { op, device: "cuda".into() }),
    }
}
