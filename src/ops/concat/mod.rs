//! Concatenation along dim 1 (channels) of tensors [N, C_i, ...rest] whose other dims agree: the U-Net's skip
//! connections. The backward splits the output gradient back into the C_i slices.
//!
//! In row-major order each input is `outer = N` blocks of C_i·rest values, and the output interleaves them:
//! block n of the output is [block n of x_0, block n of x_1, ...].

use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::{ensure_shape, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

const OP: &str = "concat_channels";

pub fn concat_channels(xs: &[&Var]) -> Result<Var> {
    let values: Vec<Tensor> = xs.iter().map(|x| x.value().clone()).collect();
    let y = forward(&values)?;
    let shapes: Vec<Vec<usize>> = values.iter().map(|t| t.shape().to_vec()).collect();
    drop(values);
    Ok(record(y, xs, move |g, needs| split(g, &shapes, needs)))
}

/// (outer, out_block, per-input blocks) where a block is C_i · rest values; checks the shapes agree.
fn blocks(shapes: &[&[usize]]) -> Result<(usize, usize, Vec<usize>)> {
    ensure_shape!(!shapes.is_empty(), OP, "no tensors to concatenate");
    let first = shapes[0];
    ensure_shape!(first.len() >= 2, OP, "inputs must be [N, C, ...], got {:?}", first);
    for s in shapes {
        let same_rest = s.len() == first.len() && s[0] == first[0] && s[2..] == first[2..];
        ensure_shape!(same_rest, OP, "shapes {:?} and {:?} differ outside dim 1", first, s);
    }
    let rest: usize = first[2..].iter().product();
    let parts: Vec<usize> = shapes.iter().map(|s| s[1] * rest).collect();
    Ok((first[0], parts.iter().sum(), parts))
}

pub fn forward(xs: &[Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
    let (outer, out_block, parts) = blocks(&shapes)?;
    let mut shape = xs[0].shape().to_vec();
    shape[1] = xs.iter().map(|t| t.shape()[1]).sum();
    let storage = match xs[0].storage() {
        Storage::Cpu(_) => {
            let srcs = xs.iter().map(|t| t.cpu_data()).collect::<Result<Vec<_>>>()?;
            let mut y = vec![0.0f32; outer * out_block];
            if out_block > 0 {
                y.par_chunks_mut(out_block).enumerate().for_each(|(n, yb)| {
                    let mut at = 0;
                    for (src, &p) in srcs.iter().zip(&parts) {
                        yb[at..at + p].copy_from_slice(&src[n * p..(n + 1) * p]);
                        at += p;
                    }
                });
            }
            Storage::Cpu(y)
        }
        Storage::Cuda(c) => {
            let be = c.backend();
            // The parts' blocks tile every row of y.
            let mut y = be.empty_as(c.dtype(), outer * out_block)?;
            let mut at = 0;
            for (t, &p) in xs.iter().zip(&parts) {
                let Storage::Cuda(src) = t.storage() else {
                    return Err(Tensor::device_mismatch("concat", &xs.iter().collect::<Vec<_>>()));
                };
                cuda::block_copy(cuda::Direction::In, src, &mut y, outer, p, out_block, at)?;
                at += p;
            }
            Storage::Cuda(y)
        }
    };
    Tensor::from_storage(storage, &shape)
}

/// The gradient slices of `g` (the concatenated shape) for inputs of the given shapes, where `needs` asks.
pub fn split(g: &Tensor, shapes: &[Vec<usize>], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let (outer, out_block, parts) = blocks(&refs)?;
    ensure_shape!(g.numel() == outer * out_block, OP, "gradient {:?} for inputs {:?}", g.shape(), shapes);
    let mut at = 0;
    let mut grads = Vec::with_capacity(shapes.len());
    for ((shape, &p), &need) in shapes.iter().zip(&parts).zip(needs) {
        let offset = at;
        at += p;
        if !need {
            grads.push(None);
            continue;
        }
        let storage = match g.storage() {
            Storage::Cpu(gv) => {
                let mut d = vec![0.0f32; outer * p];
                if p > 0 {
                    d.par_chunks_mut(p).enumerate().for_each(|(n, db)| {
                        db.copy_from_slice(&gv[n * out_block + offset..n * out_block + offset + p])
                    });
                }
                Storage::Cpu(d)
            }
            Storage::Cuda(gc) => {
                let mut d = gc.backend().empty_as(gc.dtype(), outer * p)?;
                cuda::block_copy(cuda::Direction::Out, gc, &mut d, outer, p, out_block, offset)?;
                Storage::Cuda(d)
            }
        };
        grads.push(Some(Tensor::from_storage(storage, shape)?));
    }
    Ok(grads)
}
