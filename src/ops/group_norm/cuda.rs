//! CUDA launches for GroupNorm (+SiLU) (kernels/group_norm.cu): one 256-thread block per (n, group) each way,
//! and a per-channel pass that adds the backward's per-(n, c) partial sums over n into dγ and dβ. x, y, gy and dx
//! are f32 or bf16 (y and dx take x's dtype); γ, β, the statistics and dγ, dβ are f32.

use cudarc::driver::{CudaSlice, LaunchConfig};
use half::bf16;

use super::Layout;
use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::DType;
use crate::{Error, Result};

kernels! {
    /// One block per (n, group): y, and that group's mean and rstd.
    fn group_norm_forward_f32(
        x: &CudaStorage, gamma: &CudaStorage, beta: &CudaStorage, y: &mut CudaStorage, mean: &mut CudaStorage,
        rstd: &mut CudaStorage, c: i32, g: i32, s: i32, eps: f32, silu: i32,
    );
    /// One block per (n, group): dx (when need_dx) and per-(n, c) partial sums for dγ, dβ.
    fn group_norm_backward_f32(
        x: &CudaStorage, gamma: &CudaStorage, beta: &CudaStorage, mean: &CudaStorage, rstd: &CudaStorage,
        gy: &CudaStorage, dx: &mut CudaStorage, need_dx: i32, partial: &mut CudaStorage, c: i32, g: i32, s: i32,
        silu: i32,
    );
    /// group_norm_forward_f32 with x and y in bf16 (statistics and affine in f32).
    fn group_norm_forward_bf16(
        x: &CudaSlice<bf16>, gamma: &CudaStorage, beta: &CudaStorage, y: &mut CudaSlice<bf16>,
        mean: &mut CudaStorage, rstd: &mut CudaStorage, c: i32, g: i32, s: i32, eps: f32, silu: i32,
    );
    /// group_norm_backward_f32 with x, gy and dx in bf16 (sums and partials in f32).
    fn group_norm_backward_bf16(
        x: &CudaSlice<bf16>, gamma: &CudaStorage, beta: &CudaStorage, mean: &CudaStorage, rstd: &CudaStorage,
        gy: &CudaSlice<bf16>, dx: &mut CudaSlice<bf16>, need_dx: i32, partial: &mut CudaStorage, c: i32, g: i32,
        s: i32, silu: i32,
    );
    /// dγ, dβ per channel: the partials summed over n.
    fn group_norm_param_grads_f32(partial: &CudaStorage, dgamma: &mut CudaStorage, dbeta: &mut CudaStorage, n: i32,
        c: i32);
}

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
    let mut y = be.empty_as(x.dtype(), x.len())?;
    if x.is_empty() {
        return Ok((y, be.zeros(l.batch * l.groups)?, be.zeros(l.batch * l.groups)?));
    }
    // Written by the block of each (n, group).
    let (mut mean, mut rstd) = (be.empty(l.batch * l.groups)?, be.empty(l.batch * l.groups)?);
    let (c, g, s, silu_i) = (l.channels as i32, l.groups as i32, l.spatial as i32, i32::from(silu));
    // Block ng reads and writes group ng of x / y (M = C/G·S floats at ng·M) and writes mean[ng], rstd[ng]; gamma
    // and beta have C floats.
    match x.dtype() {
        DType::F32 => group_norm_forward_f32(
            be, per_group(&l), x, gamma, beta, &mut y, &mut mean, &mut rstd, c, g, s, eps, silu_i,
        )?,
        DType::Bf16 => group_norm_forward_bf16(
            be,
            per_group(&l),
            x.bf16("group_norm")?,
            gamma,
            beta,
            y.bf16_mut("group_norm")?,
            &mut mean,
            &mut rstd,
            c,
            g,
            s,
            eps,
            silu_i,
        )?,
    }
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
    if x.is_empty() {
        return Ok((need_dx.then(|| be.zeros_as(x.dtype(), 0)).transpose()?, be.zeros(l.channels)?, be.zeros(l.channels)?));
    }
    // Every channel is written by group_norm_param_grads_f32.
    let (mut dgamma, mut dbeta) = (be.empty(l.channels)?, be.empty(l.channels)?);
    // Every (n, c) pair is written by the block of its group.
    let mut partial = be.empty(2 * l.batch * l.channels)?;
    // Without need_dx the kernel never writes dx; a one-element buffer stands in for the pointer.
    let mut dx = be.empty_as(x.dtype(), if need_dx { x.len() } else { 1 })?;
    let (c, g, s, silu_i, need_i) =
        (l.channels as i32, l.groups as i32, l.spatial as i32, i32::from(silu), i32::from(need_dx));
    // Block ng reads group ng of x and gy, mean/rstd[ng], C floats of gamma/beta; writes group ng of dx (need_dx
    // only) and partial[(ng·C/G + k)·2 + {0,1}] for its C/G channels k.
    const OP: &str = "group_norm backward";
    match x.dtype() {
        DType::F32 => group_norm_backward_f32(
            be, per_group(&l), x, gamma, beta, mean, rstd, gy, &mut dx, need_i, &mut partial, c, g, s, silu_i,
        )?,
        DType::Bf16 => group_norm_backward_bf16(
            be,
            per_group(&l),
            x.bf16(OP)?,
            gamma,
            beta,
            mean,
            rstd,
            gy.bf16(OP)?,
            dx.bf16_mut(OP)?,
            need_i,
            &mut partial,
            c,
            g,
            s,
            silu_i,
        )?,
    }
    // Reads 2·N·C partials, writes C floats of each output.
    group_norm_param_grads_f32(be, grid_1d(l.channels), &partial, &mut dgamma, &mut dbeta, l.batch as i32, c)?;
    Ok((need_dx.then_some(dx), dgamma, dbeta))
}
