//! Mean squared error: L = mean((pred − target)²) as a one-element tensor of shape [].
//!
//! Backward: dpred = 2 (pred − target) / n · dL,  dtarget = −dpred.

use crate::autograd::{record, Var};
use cudarc::driver::PushKernelArg;

use crate::backend::cuda::{cuda_err, CudaBackend};
use crate::backend::{cpu, Storage};
use crate::ops::reduce::{device_sum, Mode};
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

fn mixed() -> Error {
    Error::msg("mse: tensors on different devices")
}

/// The loss, with the sum of squares accumulated in f64.
pub fn forward(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    if let (Storage::Cuda(p), Storage::Cuda(t)) = (pred.storage(), target.storage()) {
        // The loss stays on the device: reading it (`item`) is the only host round trip.
        let (loss, _) = device_sum(p, Some(t), Mode::SqDiff, 1.0 / p.len() as f64)?;
        return Tensor::from_storage(Storage::Cuda(loss), &[]);
    }
    let (Storage::Cpu(p), Storage::Cpu(t)) = (pred.storage(), target.storage()) else {
        return Err(mixed());
    };
    let sum_sq: f64 = p.iter().zip(t).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    Ok(Tensor::scalar((sum_sq / p.len() as f64) as f32))
}

/// d loss / d pred for an output gradient `g` (one element).
pub fn backward(pred: &Tensor, target: &Tensor, g: &Tensor) -> Result<Tensor> {
    check(pred, target)?;
    ensure_shape!(g.numel() == 1, "mse backward", "output gradient {:?} is not one element", g.shape());
    if let (Storage::Cuda(p), Storage::Cuda(t), Storage::Cuda(gv)) = (pred.storage(), target.storage(), g.storage()) {
        let be = p.backend();
        let n = p.len();
        let (n_i, n_f) =
            (i32::try_from(n).map_err(|_| Error::shape("mse", "too many elements for the kernels"))?, n as f32);
        let mut out = be.empty(n)?;
        let f = be.function("loss_mse_backward_f32")?;
        // SAFETY: reads n floats of pred and target and g[0]; writes n floats.
        unsafe {
            be.stream()
                .launch_builder(&f)
                .arg(&p.buf)
                .arg(&t.buf)
                .arg(&gv.buf)
                .arg(&mut out.buf)
                .arg(&n_i)
                .arg(&n_f)
                .launch(CudaBackend::grid_1d(n))
        }
        .map_err(cuda_err)?;
        return Tensor::from_storage(Storage::Cuda(out), pred.shape());
    }
    let (Storage::Cpu(p), Storage::Cpu(t), Storage::Cpu(gv)) = (pred.storage(), target.storage(), g.storage()) else {
        return Err(mixed());
    };
    let factor = 2.0 * gv[0] / p.len() as f32;
    Tensor::from_vec(cpu::zip_map(p, t, |a, b| factor * (a - b)), pred.shape())
}
