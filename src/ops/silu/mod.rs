//! SiLU (swish): y = x · σ(x).  dy/dx = σ(x) · (1 + x · (1 − σ(x))).

use crate::autograd::{record, Var};
use crate::backend::{cpu, Storage};
use crate::{Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

pub fn silu(x: &Var) -> Result<Var> {
    let y = forward(x.value())?;
    let xv = x.value().clone();
    Ok(record(y, &[x], move |gy, _| Ok(vec![Some(backward(&xv, gy)?)])))
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn forward(x: &Tensor) -> Result<Tensor> {
    let storage = match x.storage() {
        Storage::Cpu(v) => Storage::Cpu(cpu::map(v, |a| a * sigmoid(a))),
        Storage::Cuda(c) => Storage::Cuda(cuda::forward(c)?),
    };
    Tensor::from_storage(storage, x.shape())
}

/// dx = dy · σ(x) · (1 + x · (1 − σ(x))).
pub fn backward(x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    let storage = match (x.storage(), gy.storage()) {
        (Storage::Cpu(xv), Storage::Cpu(g)) => Storage::Cpu(cpu::zip_map(xv, g, |a, g| {
            let s = sigmoid(a);
            g * s * (1.0 + a * (1.0 - s))
        })),
        (Storage::Cuda(xc), Storage::Cuda(gc)) => Storage::Cuda(cuda::backward(xc, gc)?),
        _ => return Err(Tensor::device_mismatch("silu backward", &[x, gy])),
    };
    Tensor::from_storage(storage, x.shape())
}
