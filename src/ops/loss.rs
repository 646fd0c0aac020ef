//! Mean squared error: L = mean((pred − target)²) as a one-element tensor of shape [].
//!
//! Backward: dpred = 2 (pred − target) / n · dL,  dtarget = −dpred.

use crate::autograd::{record, Var};
use crate::backend::{cpu, Storage};
use crate::{ensure_shape, Error, Result, Tensor};

pub fn mse(pred: &Var, target: &Var) -> Result<Var> {
    let loss = forward(pred.value(), target.value())?;
    let (p, t) = (pred.value().clone(), target.value().clone());
    Ok(record(loss, &[pred, target], move |g, needs| {
        let dpred = backward(&p, &t, g)?;
        let dtarget = if needs[1] { Some(dpred.scale(-1.0)?) } else { None };
        Ok(vec![needs[0].then_some(dpred), dtarget])
    }))
}

fn check(pred: &Tensor, target: &Tensor) -> Result<()> {
    ensure_shape!(pred.shape() == target.shape(), "mse", "pred {:?} vs target {:?}", pred.shape(), target.shape());
    ensure_shape!(pred.numel() > 0, "mse", "empty tensors {:?}", pred.shape());
    if pred.device() != target.device() {
        return Err(Error::msg("mse: tensors on different devices"));
    }
    Ok(())
}

fn unsupported() -> Error {
    Error::Unsupported { op: "mse", device: "cuda".into() }
}

/// The loss, with the sum of squares accumulated in f64.
pub fn forward(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    let (Storage::Cpu(p), Storage::Cpu(t)) = (pred.storage(), target.storage()) else {
        return Err(unsupported());
    };
    let sum_sq: f64 = p.iter().zip(t).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    Ok(Tensor::scalar((sum_sq / p.len() as f64) as f32))
}

/// d loss / d pred for an output gradient `g` (one element).
pub fn backward(pred: &Tensor, target: &Tensor, g: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    ensure_shape!(g.numel() == 1, "mse backward", "output gradient {:?} is not one element", g.shape());
    let (Storage::Cpu(p), Storage::Cpu(t), Storage::Cpu(gv)) = (pred.storage(), target.storage(), g.storage()) else {
        return Err(unsupported());
    };
    let factor = 2.0 * gv[0] / p.len() as f32;
    Tensor::from_vec(cpu::zip_map(p, t, |a, b| factor * (a - b)), pred.shape())
}
