//! CUDA arm of the fused diffusion steps (kernels/diffusion_step.cu): one thread per element.

use super::StepCoefs;
use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::Result;

kernels! {
    /// xt = a[s] · x0 + b[s] · noise, s = i / per_sample.
    fn diffusion_q_sample(x0: &CudaStorage, noise: &CudaStorage, a: &CudaStorage, b: &CudaStorage,
        xt: &mut CudaStorage, n: i32, per_sample: i32);
    /// One DDPM/DDIM reverse step (see `StepCoefs`).
    fn diffusion_reverse_step(
        x: &CudaStorage, eps: &CudaStorage, z: &CudaStorage, out: &mut CudaStorage, n: i32, recip: f32, recipm1: f32,
        clip: i32, c_x0: f32, c_xt: f32, c_eps: f32, sigma: f32,
    );
}

/// x_t = a[n] · x0 + b[n] · noise with `per` elements per sample.
pub(super) fn q_sample(x: &CudaStorage, e: &CudaStorage, a: &[f32], b: &[f32], per: usize) -> Result<CudaStorage> {
    let be = x.backend();
    let (ca, cb) = (be.upload(a)?, be.upload(b)?);
    let mut out = be.empty(x.len())?;
    // Reads `total` floats of x and noise and n of a, b; writes `total` floats.
    diffusion_q_sample(be, grid_1d(x.len()), x, e, &ca, &cb, &mut out, x.len() as i32, per as i32)?;
    Ok(out)
}

/// One reverse step; `z` = None stands for zero noise.
pub(super) fn reverse_step(x: &CudaStorage, e: &CudaStorage, z: Option<&CudaStorage>, c: &StepCoefs) -> Result<CudaStorage> {
    let be = x.backend();
    let zero;
    let z = match z {
        Some(z) => z,
        None => {
            zero = be.zeros(x.len())?;
            &zero
        }
    };
    let mut out = be.empty(x.len())?;
    let (n, clip) = (x.len() as i32, c.clip as i32);
    // Reads n floats of x, eps, z; writes n floats.
    diffusion_reverse_step(
        be, grid_1d(x.len()), x, e, z, &mut out, n, c.recip, c.recipm1, clip, c.c_x0, c.c_xt, c.c_eps, c.sigma,
    )?;
    Ok(out)
}
