//! Inference-only ReLU, y = max(x, 0) (the Inception network's activation); no backward is recorded.

use crate::backend::{cpu, Storage};
use crate::{Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

pub fn relu_forward(x: &Tensor) -> Result<Tensor> {
    let storage = match x.storage() {
        // NaN stays NaN, as torch.relu.
        Storage::Cpu(xs) => Storage::Cpu(cpu::map(xs, |v| if v < 0.0 { 0.0 } else { v })),
        Storage::Cuda(xc) => Storage::Cuda(cuda::forward(xc)?),
    };
    Tensor::from_storage(storage, x.shape())
}
