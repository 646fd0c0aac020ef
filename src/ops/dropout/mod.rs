//! Inverted dropout: y = x · mask / (1 − p), mask ~ Bernoulli(1 − p), so E[y] = x and evaluation is the identity.
//!
//! The mask is not stored: it is a pure function of the Philox draw `(seed, offset)` reserved in the forward pass,
//! and the backward (dx = dy · mask / (1 − p)) regenerates it. Element e is kept iff its uniform
//! `u_e ∈ (0, 1]` (element e of that draw, see `rng.rs`) satisfies `u_e > p`; with 24-bit uniforms the keep
//! probability is 1 − p up to 2⁻²⁴. kernels/dropout.cu computes the identical mask on the GPU.

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// Dropout with drop probability `p ∈ [0, 1)`. When `train` is false or `p == 0` this is the identity and draws
/// nothing from `rng`; otherwise it takes one draw (advances `rng.offset()` by one).
pub fn dropout(x: &Var, p: f32, rng: &mut Philox, train: bool) -> Result<Var> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::shape("dropout", format!("drop probability must be in [0, 1), got {p}")));
    }
    if !train || p == 0.0 {
        return Ok(x.clone());
    }
    let draw = rng.take_draw();
    let y = forward(x.value(), p, draw)?;
    Ok(record(y, &[x], move |gy, _| Ok(vec![Some(backward(gy, p, draw)?)])))
}

/// y = x · mask / (1 − p) with the mask of `draw`.
pub fn forward(x: &Tensor, p: f32, draw: Philox) -> Result<Tensor> {
    apply_mask(x, p, draw, cuda::Pass::Forward)
}

/// dx = dy · mask / (1 − p): the same mask, regenerated from `draw`.
pub fn backward(gy: &Tensor, p: f32, draw: Philox) -> Result<Tensor> {
    apply_mask(gy, p, draw, cuda::Pass::Backward)
}

fn apply_mask(x: &Tensor, p: f32, draw: Philox, pass: cuda::Pass) -> Result<Tensor> {
    let keep = 1.0 - p;
    let storage = match x.storage() {
        Storage::Cpu(v) => {
            let u = { draw }.uniform(v.len());
            // Divide (not multiply by 1/keep) so kept values are exactly x / (1 − p), as in the kernel.
            Storage::Cpu(v.iter().zip(&u).map(|(&a, &u)| if u > p { a / keep } else { 0.0 }).collect())
        }
        Storage::Cuda(c) => Storage::Cuda(cuda::apply_mask(pass, c, p, draw)?),
    };
    Tensor::from_storage(storage, x.shape())
}
