//! CUDA arm of dropout (kernels/dropout.cu): the mask regenerated from the Philox draw, one thread per 4 elements.

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::DType;
use crate::rng::Philox;
use crate::{Error, Result};

kernels! {
    /// y = x · mask / (1 − p) with the mask of the draw (seed, rng_offset(counter, offset)), x's element e at the
    /// draw's `first + e`; `counter` is the device address of the stream's `DeviceCounter` (0: none, `offset` is
    /// the draw's own).
    fn dropout_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32, p: f32, seed: u64, offset: u64, first: u64,
        counter: u64);
    /// gx = gy · mask / (1 − p), the same mask.
    fn dropout_backward(gy: &CudaStorage, gx: &mut CudaStorage, n: i32, p: f32, seed: u64, offset: u64,
        first: u64, counter: u64);
    /// dropout_forward on bf16 storage.
    fn dropout_forward_bf16(x: &CudaSlice<bf16>, y: &mut CudaSlice<bf16>, n: i32, p: f32, seed: u64, offset: u64,
        first: u64, counter: u64);
    /// dropout_backward on bf16 storage.
    fn dropout_backward_bf16(gy: &CudaSlice<bf16>, gx: &mut CudaSlice<bf16>, n: i32, p: f32, seed: u64,
        offset: u64, first: u64, counter: u64);
}

/// Which kernel `apply_mask` runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pass {
    Forward,
    Backward,
}

/// x · mask / (1 − p) on the device, x's element e at the draw's element `first + e`.
pub(super) fn apply_mask(pass: Pass, x: &CudaStorage, p: f32, draw: Philox, first: u64) -> Result<CudaStorage> {
    let be = x.backend();
    let n = x.len();
    if n > i32::MAX as usize {
        return Err(Error::shape("dropout", format!("{n} elements do not fit the kernel's int count")));
    }
    // A device-counted stream: the offset is read from its counter (checked to be on this device).
    let (counter, offset) = draw.device_offset(be)?;
    let mut y = be.empty_as(x.dtype(), n)?;
    // One thread per 4-element Philox block of the draw that holds an element of x.
    let (lo, hi) = (first / 4, (first + n as u64).div_ceil(4));
    let cfg = grid_1d((hi - lo) as usize);
    // The kernel reads n elements of x and writes n of y.
    if x.dtype() == DType::Bf16 {
        let kernel = match pass {
            Pass::Forward => dropout_forward_bf16,
            Pass::Backward => dropout_backward_bf16,
        };
        let (xb, yb) = (x.bf16("dropout")?, y.bf16_mut("dropout")?);
        kernel(be, cfg, xb, yb, n as i32, p, draw.seed(), offset, first, counter)?;
        return Ok(y);
    }
    let kernel = match pass {
        Pass::Forward => dropout_forward,
        Pass::Backward => dropout_backward,
    };
    kernel(be, cfg, x, &mut y, n as i32, p, draw.seed(), offset, first, counter)?;
    Ok(y)
}
