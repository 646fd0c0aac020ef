//! Mean squared error: L = mean((pred − target)²) as a one-element tensor of shape [].
//!
//! Backward: dpred = 2 (pred − target) / n · dL,  dtarget = −dpred.
//!
//! Mixed precision: a bf16 prediction (or target) is widened to f32 (exact) and the loss, its f64 sum and the
//! gradient are f32 maths; the gradient is rounded back to the prediction's dtype. The widening copies the model's
//! output once ([B, 3, H, W]: negligible beside the U-Net).

use crate::autograd::{record, Var};
use crate::backend::cuda_reduce::{device_sum, Mode};
use crate::backend::{cpu, DType, Storage};
use crate::{ensure_shape, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

pub fn mse(pred: &Var, target: &Var) -> Result<Var> {
    let loss = forward(pred.value(), target.value())?;
    let (p, t) = (pred.value().clone(), target.value().clone());
    Ok(record(loss, &[pred, target], move |g, needs| {
        let dpred = backward(&p, &t, g)?;
        let dtarget = if needs[1] { Some(dpred.scale(-1.0)?.to_dtype(t.dtype())?) } else { None };
        Ok(vec![needs[0].then_some(dpred), dtarget])
    }))
}

fn check(pred: &Tensor, target: &Tensor) -> Result<()> {
    ensure_shape!(pred.shape() == target.shape(), "mse", "pred {:?} vs target {:?}", pred.shape(), target.shape());
    ensure_shape!(pred.numel() > 0, "mse", "empty tensors {:?}", pred.shape());
    Tensor::same_device("mse", &[pred, target])?;
    Ok(())
}

/// The loss, with the sum of squares accumulated in f64.
pub fn forward(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    let (pred, target) = (&pred.to_dtype(DType::F32)?, &target.to_dtype(DType::F32)?);
    if let (Storage::Cuda(p), Storage::Cuda(t)) = (pred.storage(), target.storage()) {
        // The loss stays on the device: reading it (`item`) is the only host round trip.
        let (loss, _) = device_sum(p, Some(t), Mode::SqDiff, 1.0 / p.len() as f64)?;
        return Tensor::from_storage(Storage::Cuda(loss), &[]);
    }
    let (Storage::Cpu(p), Storage::Cpu(t)) = (pred.storage(), target.storage()) else {
        return Err(Tensor::device_mismatch("mse", &[pred, target]));
    };
    let sum_sq: f64 = p.iter().zip(t).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    Ok(Tensor::scalar((sum_sq / p.len() as f64) as f32))
}

/// d loss / d pred for an output gradient `g` (one element).
pub fn backward(pred: &Tensor, target: &Tensor, g: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    ensure_shape!(g.numel() == 1, "mse backward", "output gradient {:?} is not one element", g.shape());
    let dtype = pred.dtype();
    let (pred, target) = (&pred.to_dtype(DType::F32)?, &target.to_dtype(DType::F32)?);
    if let (Storage::Cuda(p), Storage::Cuda(t), Storage::Cuda(gv)) = (pred.storage(), target.storage(), g.storage()) {
        let out = cuda::backward(p, t, gv)?;
        return Tensor::from_storage(Storage::Cuda(out), pred.shape())?.to_dtype(dtype);
    }
    let (Storage::Cpu(p), Storage::Cpu(t), Storage::Cpu(gv)) = (pred.storage(), target.storage(), g.storage()) else {
        return Err(Tensor::device_mismatch("mse backward", &[pred, target, g]));
    };
    let factor = 2.0 * gv[0] / p.len() as f32;
    Tensor::from_vec(cpu::zip_map(p, t, |a, b| factor * (a - b)), pred.shape())
}
