//! CUDA arm of the 2× nearest upsampling (kernels/upsample.cu): one thread per destination element.

use super::OP;
use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::DType;
use crate::{Error, Result};

kernels! {
    /// y[2h + i, 2w + j] = x[h, w]; H, W the input's size.
    fn upsample_nearest2x_forward(x: &CudaStorage, y: &mut CudaStorage, n_out: i32, h: i32, w: i32);
    /// dx[h, w] = Σ of the 2×2 block of g at (2h, 2w).
    fn upsample_nearest2x_backward(g: &CudaStorage, dx: &mut CudaStorage, n_in: i32, h: i32, w: i32);
    /// upsample_nearest2x_forward on bf16 storage (a copy).
    fn upsample_nearest2x_forward_bf16(x: &CudaSlice<bf16>, y: &mut CudaSlice<bf16>, n_out: i32, h: i32, w: i32);
    /// upsample_nearest2x_backward on bf16 storage (f32 sum, one rounding).
    fn upsample_nearest2x_backward_bf16(g: &CudaSlice<bf16>, dx: &mut CudaSlice<bf16>, n_in: i32, h: i32, w: i32);
}

/// Which kernel `launch` runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pass {
    Forward,
    Backward,
}

/// Both kernels take (src, dst, n_dst, H, W) with H, W the input's size and one thread per dst element.
pub(super) fn launch(pass: Pass, src: &CudaStorage, n_out: usize, h: usize, w: usize) -> Result<CudaStorage> {
    let be = src.backend();
    let mut y = be.empty_as(src.dtype(), n_out)?;
    if n_out == 0 {
        return Ok(y);
    }
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("{OP}: {v} is too large for CUDA")));
    let (n_i, h_i, w_i) = (to_i32(n_out)?, to_i32(h)?, to_i32(w)?);
    // Thread i < n_out writes dst[i] and reads src elements of the same (n, c) plane.
    if src.dtype() == DType::Bf16 {
        let kernel = match pass {
            Pass::Forward => upsample_nearest2x_forward_bf16,
            Pass::Backward => upsample_nearest2x_backward_bf16,
        };
        kernel(be, grid_1d(n_out), src.bf16(OP)?, y.bf16_mut(OP)?, n_i, h_i, w_i)?;
        return Ok(y);
    }
    let kernel = match pass {
        Pass::Forward => upsample_nearest2x_forward,
        Pass::Backward => upsample_nearest2x_backward,
    };
    kernel(be, grid_1d(n_out), src, &mut y, n_i, h_i, w_i)?;
    Ok(y)
}
