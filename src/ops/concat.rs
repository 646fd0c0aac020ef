//! Concatenation along dim 1 (channels) of tensors [N, C_i, ...rest] whose other dims agree: the U-Net's skip
//! connections. The backward splits the output gradient back into the C_i slices.
//!
//! In row-major order each input is `outer = N` blocks of C_i·rest values, and the output interleaves them:
//! block n of the output is [block n of x_0, block n of x_1, ...].

use cudarc::driver::PushKernelArg;
use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::Storage;
use crate::{ensure_shape, Error, Result, Tensor};

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
            let mut y = be.zeros(outer * out_block)?;
            let mut at = 0;
            for (t, &p) in xs.iter().zip(&parts) {
                let Storage::Cuda(src) = t.storage() else {
                    return Err(Error::msg("concat: tensors on different devices"));
                };
                launch_block_copy("concat_channels_copy_in", src, &mut y, outer, p, out_block, at)?;
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
                let mut d = gc.backend().zeros(outer * p)?;
                launch_block_copy("concat_channels_split_out", gc, &mut d, outer, p, out_block, offset)?;
                Storage::Cuda(d)
            }
        };
        grads.push(Some(Tensor::from_storage(storage, shape)?));
    }
    Ok(grads)
}

/// Copy between a part (outer blocks of `part` values) and its slot at `offset` in the whole (outer blocks of
/// `whole` values); the kernel decides the direction.
fn launch_block_copy(
    name: &'static str,
    src: &CudaStorage,
    dst: &mut CudaStorage,
    outer: usize,
    part: usize,
    whole: usize,
    offset: usize,
) -> Result<()> {
    let n = outer * part;
    if n == 0 {
        return Ok(());
    }
    let be = src.backend().clone();
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("{OP}: {v} is too large for CUDA")));
    let (n_i, part_i, whole_i, offset_i) = (to_i32(n)?, to_i32(part)?, to_i32(whole)?, to_i32(offset)?);
    let f = be.function(name)?;
    // SAFETY: thread i < n touches part element i and whole element (i / part) * whole + offset + i % part, both in
    // bounds because offset + part <= whole.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&src.buf)
            .arg(&mut dst.buf)
            .arg(&n_i)
            .arg(&part_i)
            .arg(&whole_i)
            .arg(&offset_i)
            .launch(CudaBackend::grid_1d(n))
    }
    .map_err(|e| Error::Cuda(format!("{e:?}")))?;
    Ok(())
}
