//! Nearest-neighbour upsampling by 2: [N, C, H, W] → [N, C, 2H, 2W], y[2h + i, 2w + j] = x[h, w] for i, j ∈ {0, 1}.
//! The backward sums each 2×2 block of the output gradient.

use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::{Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

const OP: &str = "upsample_nearest2x";

pub fn upsample_nearest2x(x: &Var) -> Result<Var> {
    let y = forward(x.value())?;
    let shape = x.shape().to_vec();
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(backward(g, &shape)?)])))
}

pub fn forward(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4(OP)?;
    let out_shape = [n, c, 2 * h, 2 * w];
    let storage = match x.storage() {
        Storage::Cpu(xs) => {
            let mut y = vec![0.0f32; xs.len() * 4];
            if h * w > 0 {
                y.par_chunks_mut(4 * h * w).zip(xs.par_chunks(h * w)).for_each(|(yp, xp)| {
                    // Both output rows 2h and 2h + 1 repeat input row h, each value twice.
                    for (y2, xr) in yp.chunks_mut(4 * w).zip(xp.chunks(w)) {
                        let (top, bottom) = y2.split_at_mut(2 * w);
                        for (pair, &v) in top.chunks_mut(2).zip(xr) {
                            pair.fill(v);
                        }
                        bottom.copy_from_slice(top);
                    }
                });
            }
            Storage::Cpu(y)
        }
        Storage::Cuda(xc) => Storage::Cuda(cuda::launch(cuda::Pass::Forward, xc, 4 * xc.len(), h, w)?),
    };
    Tensor::from_storage(storage, &out_shape)
}

/// dx[h, w] = Σ of the 2×2 block of `g` at (2h, 2w); `x_shape` is the input's [N, C, H, W].
pub fn backward(g: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    let [n, c, h, w] = x_shape[..] else {
        return Err(Error::shape(OP, format!("input shape {x_shape:?} is not 4-D")));
    };
    crate::ensure_shape!(g.shape() == [n, c, 2 * h, 2 * w], OP, "gradient {:?} for input {:?}", g.shape(), x_shape);
    let storage = match g.storage() {
        Storage::Cpu(gs) => {
            let mut dx = vec![0.0f32; n * c * h * w];
            if h * w > 0 {
                dx.par_chunks_mut(h * w).zip(gs.par_chunks(4 * h * w)).for_each(|(dp, gp)| {
                    for (dr, g2) in dp.chunks_mut(w).zip(gp.chunks(4 * w)) {
                        let (top, bottom) = g2.split_at(2 * w);
                        for (k, d) in dr.iter_mut().enumerate() {
                            *d = top[2 * k] + top[2 * k + 1] + bottom[2 * k] + bottom[2 * k + 1];
                        }
                    }
                });
            }
            Storage::Cpu(dx)
        }
        Storage::Cuda(gc) => Storage::Cuda(cuda::launch(cuda::Pass::Backward, gc, n * c * h * w, h, w)?),
    };
    Tensor::from_storage(storage, x_shape)
}
