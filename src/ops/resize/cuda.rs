//! CUDA arm of the bilinear resize (kernels/resize.cu): one thread per output element.

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

kernels! {
    /// y = bilinear resize of each h×w plane of x to out_h×out_w (PyTorch's align_corners=False).
    fn resize_bilinear_forward(x: &CudaStorage, y: &mut CudaStorage, n_out: i32, h: i32, w: i32, out_h: i32,
        out_w: i32);
}

/// `planes` planes of size `[h, w]` resized to `[out_h, out_w]`.
pub(super) fn forward(x: &CudaStorage, planes: usize, [h, w]: [usize; 2], [out_h, out_w]: [usize; 2]) -> Result<CudaStorage> {
    let be = x.backend();
    let n_out = planes * out_h * out_w;
    let mut y = be.zeros(n_out)?;
    let to_i32 = |v: usize| {
        i32::try_from(v).map_err(|_| Error::msg(format!("resize_bilinear: {v} is too large for CUDA")))
    };
    let (n_i, h_i, w_i, oh_i, ow_i) = (to_i32(n_out)?, to_i32(h)?, to_i32(w)?, to_i32(out_h)?, to_i32(out_w)?);
    // Thread i < n_out writes y[i] and reads four in-bounds pixels of its own input plane.
    resize_bilinear_forward(be, grid_1d(n_out), x, &mut y, n_i, h_i, w_i, oh_i, ow_i)?;
    Ok(y)
}
