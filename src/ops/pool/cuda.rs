//! CUDA arm of pooling (kernels/pool.cu): one thread per output element.

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

kernels! {
    /// Max (mode 0) or average (1: count_include_pad false, 2: true) pooling of square windows.
    fn pool2d_forward(x: &CudaStorage, y: &mut CudaStorage, n_out: i32, h: i32, w: i32, ho: i32, wo: i32, k: i32,
        stride: i32, pad: i32, mode: i32);
    /// The mean of each of `planes` planes of hw values.
    fn global_avg_pool_forward(x: &CudaStorage, y: &mut CudaStorage, planes: i32, hw: i32);
}

fn to_i32(name: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::msg(format!("{name}: {v} is too large for CUDA")))
}

/// `dims` = [h, w, ho, wo, kernel, stride, padding, mode].
pub(super) fn pool2d(x: &CudaStorage, n_out: usize, dims: [usize; 8]) -> Result<CudaStorage> {
    let be = x.backend();
    let mut y = be.zeros(n_out)?;
    if n_out == 0 {
        return Ok(y);
    }
    let i = |v: usize| to_i32("pool2d_forward", v);
    let [h, w, ho, wo, k, s, p, mode] = dims;
    // Thread i < n_out writes y[i] and reads only the x plane it belongs to (the kernel checks bounds).
    pool2d_forward(
        be, grid_1d(n_out), x, &mut y, i(n_out)?, i(h)?, i(w)?, i(ho)?, i(wo)?, i(k)?, i(s)?, i(p)?, i(mode)?,
    )?;
    Ok(y)
}

/// The mean of each of `planes` planes of `hw` values.
pub(super) fn global_avg_pool(x: &CudaStorage, planes: usize, hw: usize) -> Result<CudaStorage> {
    let be = x.backend();
    let mut y = be.zeros(planes)?;
    if planes == 0 {
        return Ok(y);
    }
    let i = |v: usize| to_i32("global_avg_pool_forward", v);
    // Thread i < planes writes y[i] and reads plane i.
    global_avg_pool_forward(be, grid_1d(planes), x, &mut y, i(planes)?, i(hw)?)?;
    Ok(y)
}
