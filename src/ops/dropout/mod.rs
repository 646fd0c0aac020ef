//! Inverted dropout: y = x · mask / (1 − p), mask ~ Bernoulli(1 − p), so E[y] = x and evaluation is the identity.
//!
//! The mask is not stored: it is a pure function of the Philox draw `(seed, offset)` reserved in the forward pass,
//! and the backward (dx = dy · mask / (1 − p)) regenerates it. Element e is kept iff its uniform
//! `u_e ∈ (0, 1]` (element e of that draw, see `rng.rs`) satisfies `u_e > p`; with 24-bit uniforms the keep
//! probability is 1 − p up to 2⁻²⁴. kernels/dropout.cu computes the identical mask on the GPU.
//!
//! A data-parallel replica holds rows `r·b ..` of the global batch: its element e is element `first + e` of the
//! draw (`first` = its first row × the elements per row, `dropout_in_batch`), so an element's mask depends only on
//! the draw and its index in the global batch, never on how many GPUs share the batch.

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// Dropout with drop probability `p ∈ [0, 1)`. When `train` is false or `p == 0` this is the identity and draws
/// nothing from `rng`; otherwise it takes one draw (advances `rng.offset()` by one).
pub fn dropout(x: &Var, p: f32, rng: &mut Philox, train: bool) -> Result<Var> {
    dropout_in_batch(x, p, rng, train, 0)
}

/// `dropout` of rows `first_row ..` of a larger batch: x's elements take the draw's uniforms from element
/// `first_row · (elements per row)` on (see the module docs).
pub fn dropout_in_batch(x: &Var, p: f32, rng: &mut Philox, train: bool, first_row: usize) -> Result<Var> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::shape("dropout", format!("drop probability must be in [0, 1), got {p}")));
    }
    if !train || p == 0.0 {
        return Ok(x.clone());
    }
    let draw = rng.take_draw();
    let rows = x.shape().first().copied().unwrap_or(1).max(1);
    let first = (first_row * (x.value().numel() / rows)) as u64;
    let y = forward(x.value(), p, draw, first)?;
    Ok(record(y, &[x], move |gy, _| Ok(vec![Some(backward(gy, p, draw, first)?)])))
}

/// y = x · mask / (1 − p) with the mask of `draw`, x's element e taking the draw's element `first + e`.
pub fn forward(x: &Tensor, p: f32, draw: Philox, first: u64) -> Result<Tensor> {
    apply_mask(x, p, draw, first, cuda::Pass::Forward)
}

/// dx = dy · mask / (1 − p): the same mask, regenerated from `draw` (and `first`).
pub fn backward(gy: &Tensor, p: f32, draw: Philox, first: u64) -> Result<Tensor> {
    apply_mask(gy, p, draw, first, cuda::Pass::Backward)
}

fn apply_mask(x: &Tensor, p: f32, draw: Philox, first: u64, pass: cuda::Pass) -> Result<Tensor> {
    let keep = 1.0 - p;
    let storage = match x.storage() {
        Storage::Cpu(v) => {
            let u = draw.uniform_at(first, v.len());
            // Divide (not multiply by 1/keep) so kept values are exactly x / (1 − p), as in the kernel.
            Storage::Cpu(v.iter().zip(&u).map(|(&a, &u)| if u > p { a / keep } else { 0.0 }).collect())
        }
        Storage::Cuda(c) => Storage::Cuda(cuda::apply_mask(pass, c, p, draw, first)?),
    };
    Tensor::from_storage(storage, x.shape())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masks of a batch's row slices, each at its first row, are the whole batch's mask: what makes N GPUs
    /// drop the same elements as one. Rows of 3·5 elements, so slices start inside Philox's 4-element blocks.
    #[test]
    fn row_slices_at_their_offsets_give_the_whole_batch_mask() {
        let (rows, per) = (6, 15);
        let x: Vec<f32> = (0..rows * per).map(|i| 1.0 + i as f32).collect();
        let whole = Tensor::from_vec(x.clone(), &[rows, 3, 5]).unwrap();
        let mut rng = Philox::from_state(7, 3);
        let want = dropout(&Var::constant(whole), 0.4, &mut rng, true).unwrap().into_value().to_vec().unwrap();
        assert_eq!(rng.offset(), 4);
        assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
        for split in [1, 2, 3, 6] {
            let b = rows / split;
            let mut got = Vec::new();
            for r in 0..split {
                let part = Tensor::from_vec(x[r * b * per..(r + 1) * b * per].to_vec(), &[b, 3, 5]).unwrap();
                let mut rng = Philox::from_state(7, 3);
                let y = dropout_in_batch(&Var::constant(part), 0.4, &mut rng, true, r * b).unwrap();
                assert_eq!(rng.offset(), 4, "one draw per call, whatever the slice");
                got.extend(y.into_value().to_vec().unwrap());
            }
            assert_eq!(got, want, "{split} slices");
        }
        // uniform_at is the uniform draw read from an index on.
        let all = Philox::from_state(9, 2).uniform(37);
        assert_eq!(Philox::from_state(9, 2).uniform_at(5, 30), all[5..35].to_vec());
    }
}
