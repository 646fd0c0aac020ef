//! CUDA launches for GroupNorm (+SiLU) (kernels/group_norm.cu): one 256-thread block per (n, group) each way,
//! and a per-channel pass that adds the backward's per-(n, c) partial sums over n into dγ and dβ.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::Layout;
use crate::backend::cuda::{cuda_err, CudaBackend, CudaStorage};
use crate::{Error, Result};

const THREADS: u32 = 256;

fn check(l: &Layout) -> Result<()> {
    let n = l.batch * l.channels * l.spatial;
    if n > i32::MAX as usize || l.batch * l.groups > u32::MAX as usize {
        return Err(Error::shape("group_norm", format!("{l:?} is too large for the CUDA kernels")));
    }
    Ok(())
}

/// One block per (n, group).
fn per_group(l: &Layout) -> LaunchConfig {
    LaunchConfig { grid_dim: ((l.batch * l.groups) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// (y, mean, rstd).
pub(super) fn forward(
    x: &CudaStorage,
    gamma: &CudaStorage,
    beta: &CudaStorage,
    l: Layout,
    eps: f32,
    silu: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    check(&l)?;
    let be = x.backend();
    let mut y = be.empty(x.len())?;
    let (mut mean, mut rstd) = (be.zeros(l.batch * l.groups)?, be.zeros(l.batch * l.groups)?);
    if x.is_empty() {
        return Ok((y, mean, rstd));
    }
    let f = be.function("group_norm_forward_f32")?;
    let (c, g, s, silu_i) = (l.channels as i32, l.groups as i32, l.spatial as i32, i32::from(silu));
    // SAFETY: block ng reads and writes group ng of x / y (M = C/G·S floats at ng·M) and writes mean[ng], rstd[ng];
    // gamma and beta have C floats.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&x.buf)
            .arg(&gamma.buf)
            .arg(&beta.buf)
            .arg(&mut y.buf)
            .arg(&mut mean.buf)
            .arg(&mut rstd.buf)
            .arg(&c)
            .arg(&g)
            .arg(&s)
            .arg(&eps)
            .arg(&silu_i)
            .launch(per_group(&l))
    }
    .map_err(cuda_err)?;
    Ok((y, mean, rstd))
}

/// (dx if asked for, dγ, dβ).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    x: &CudaStorage,
    gamma: &CudaStorage,
    beta: &CudaStorage,
    mean: &CudaStorage,
    rstd: &CudaStorage,
    gy: &CudaStorage,
    l: Layout,
    silu: bool,
    need_dx: bool,
) -> Result<(Option<CudaStorage>, CudaStorage, CudaStorage)> {
    check(&l)?;
    let be = x.backend();
    let (mut dgamma, mut dbeta) = (be.zeros(l.channels)?, be.zeros(l.channels)?);
    if x.is_empty() {
        return Ok((need_dx.then(|| be.zeros(0)).transpose()?, dgamma, dbeta));
    }
    // Every (n, c) pair is written by the block of its group.
    let mut partial = be.empty(2 * l.batch * l.channels)?;
    // Without need_dx the kernel never writes dx; a one-element buffer stands in for the pointer.
    let mut dx = be.empty(if need_dx { x.len() } else { 1 })?;
    let f = be.function("group_norm_backward_f32")?;
    let (c, g, s, silu_i, need_i) =
        (l.channels as i32, l.groups as i32, l.spatial as i32, i32::from(silu), i32::from(need_dx));
    // SAFETY: block ng reads group ng of x and gy, mean/rstd[ng], C floats of gamma/beta; writes group ng of dx
    // (need_dx only) and partial[(ng·C/G + k)·2 + {0,1}] for its C/G channels k.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&x.buf)
            .arg(&gamma.buf)
            .arg(&beta.buf)
            .arg(&mean.buf)
            .arg(&rstd.buf)
            .arg(&gy.buf)
            .arg(&mut dx.buf)
            .arg(&need_i)
            .arg(&mut partial.buf)
            .arg(&c)
            .arg(&g)
            .arg(&s)
            .arg(&silu_i)
            .launch(per_group(&l))
    }
    .map_err(cuda_err)?;
    let f = be.function("group_norm_param_grads_f32")?;
    let n = l.batch as i32;
    // SAFETY: reads 2·N·C partials, writes C floats of each output.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&partial.buf)
            .arg(&mut dgamma.buf)
            .arg(&mut dbeta.buf)
            .arg(&n)
            .arg(&c)
            .launch(CudaBackend::grid_1d(l.channels))
    }
    .map_err(cuda_err)?;
    Ok((need_dx.then_some(dx), dgamma, dbeta))
}
