//! Inference-only pooling for the Inception network (src/eval/inception.rs); no backward is recorded.
//!
//! `max_pool2d_forward` and `avg_pool2d_forward` follow PyTorch's `F.max_pool2d` / `F.avg_pool2d` with square
//! windows, floor output sizes (ceil_mode = False) and zero padding: H_out = (H + 2·pad − k) / stride + 1.
//! Max pooling ignores padded positions (PyTorch pads with −∞). Average pooling divides by the number of window
//! positions inside the image when `count_include_pad` is false (TensorFlow's behaviour, which pytorch-fid's
//! FIDInceptionA/C/E patch in), else by the window clipped to the padded image, as PyTorch does.
//! `global_avg_pool_forward` is `nn.AdaptiveAvgPool2d((1, 1))`: the mean of each plane.

use rayon::prelude::*;

use crate::backend::Storage;
use crate::{ensure_shape, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// A square pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Pool2d {
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Pool2d {
        Pool2d { kernel, stride, padding }
    }

    /// The output side for an input side, or a shape error.
    fn out_size(&self, op: &'static str, size: usize) -> Result<usize> {
        let Pool2d { kernel: k, stride: s, padding: p } = *self;
        ensure_shape!(k > 0 && s > 0, op, "kernel and stride must be positive, got {self:?}");
        ensure_shape!(2 * p <= k, op, "padding {p} is more than half the kernel {k} (PyTorch refuses it too)");
        ensure_shape!(size + 2 * p >= k, op, "window {k} larger than the padded input side {}", size + 2 * p);
        Ok((size + 2 * p - k) / s + 1)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Max,
    Avg { count_include_pad: bool },
}

/// Max pooling, [N, C, H, W] → [N, C, H_out, W_out].
pub fn max_pool2d_forward(x: &Tensor, p: Pool2d) -> Result<Tensor> {
    pool(x, p, Kind::Max, "max_pool2d")
}

/// Average pooling, [N, C, H, W] → [N, C, H_out, W_out].
pub fn avg_pool2d_forward(x: &Tensor, p: Pool2d, count_include_pad: bool) -> Result<Tensor> {
    pool(x, p, Kind::Avg { count_include_pad }, "avg_pool2d")
}

/// The value of one output position (oh, ow) of one plane `xp` (H × W).
fn window(xp: &[f32], h: usize, w: usize, p: Pool2d, kind: Kind, oh: usize, ow: usize) -> f32 {
    let (h0, w0) = ((oh * p.stride) as isize - p.padding as isize, (ow * p.stride) as isize - p.padding as isize);
    let (h1, w1) = (h0 + p.kernel as isize, w0 + p.kernel as isize);
    // PyTorch's divisor with padding counted: the window clipped to the padded image.
    let padded = (h1.min((h + p.padding) as isize) - h0) * (w1.min((w + p.padding) as isize) - w0);
    let (hs, he) = (h0.max(0) as usize, h1.min(h as isize) as usize);
    let (ws, we) = (w0.max(0) as usize, w1.min(w as isize) as usize);
    match kind {
        Kind::Max => {
            let mut m = f32::NEG_INFINITY;
            for row in xp[hs * w..he * w].chunks_exact(w) {
                for &v in &row[ws..we] {
                    // NaN propagates, as in PyTorch.
                    if v > m || v.is_nan() {
                        m = v;
                    }
                }
            }
            m
        }
        Kind::Avg { count_include_pad } => {
            let mut s = 0.0f32;
            for row in xp[hs * w..he * w].chunks_exact(w) {
                for &v in &row[ws..we] {
                    s += v;
                }
            }
            let count = if count_include_pad { padded as usize } else { (he - hs) * (we - ws) };
            s / count as f32
        }
    }
}

fn pool(x: &Tensor, p: Pool2d, kind: Kind, op: &'static str) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4(op)?;
    let (ho, wo) = (p.out_size(op, h)?, p.out_size(op, w)?);
    let out_shape = [n, c, ho, wo];
    let storage = match x.storage() {
        Storage::Cpu(xs) => {
            let mut y = vec![0.0f32; n * c * ho * wo];
            if ho * wo > 0 && h * w > 0 {
                y.par_chunks_mut(ho * wo).zip(xs.par_chunks(h * w)).for_each(|(yp, xp)| {
                    for (i, out) in yp.iter_mut().enumerate() {
                        *out = window(xp, h, w, p, kind, i / wo, i % wo);
                    }
                });
            }
            Storage::Cpu(y)
        }
        Storage::Cuda(xc) => {
            let mode = match kind {
                Kind::Max => 0,
                Kind::Avg { count_include_pad: false } => 1,
                Kind::Avg { count_include_pad: true } => 2,
            };
            let dims = [h, w, ho, wo, p.kernel, p.stride, p.padding, mode];
            Storage::Cuda(cuda::pool2d(xc, n * c * ho * wo, dims)?)
        }
    };
    Tensor::from_storage(storage, &out_shape)
}

/// `nn.AdaptiveAvgPool2d((1, 1))`: [N, C, H, W] → [N, C, 1, 1], the mean of each H × W plane.
pub fn global_avg_pool_forward(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4("global_avg_pool")?;
    ensure_shape!(h * w > 0, "global_avg_pool", "empty planes in {:?}", x.shape());
    let storage = match x.storage() {
        Storage::Cpu(xs) => {
            Storage::Cpu(xs.par_chunks(h * w).map(|p| p.iter().sum::<f32>() / (h * w) as f32).collect())
        }
        Storage::Cuda(xc) => Storage::Cuda(cuda::global_avg_pool(xc, n * c, h * w)?),
    };
    Tensor::from_storage(storage, &[n, c, 1, 1])
}
