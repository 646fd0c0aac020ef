//! CUDA arm of the fused diffusion steps (kernels/diffusion_step.cu): one thread per element.

use cudarc::driver::CudaSlice;

use super::{BatchTables, StepCoefs};
use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::backend::Storage;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

kernels! {
    /// xt = a[s] · x0 + b[s] · noise, s = i / per_sample.
    fn diffusion_q_sample(x0: &CudaStorage, noise: &CudaStorage, a: &CudaStorage, b: &CudaStorage,
        xt: &mut CudaStorage, n: i32, per_sample: i32);
    /// One DDPM/DDIM reverse step (see `StepCoefs`).
    fn diffusion_reverse_step(
        x: &CudaStorage, eps: &CudaStorage, z: &CudaStorage, out: &mut CudaStorage, n: i32, recip: f32, recipm1: f32,
        clip: i32, c_x0: f32, c_xt: f32, c_eps: f32, sigma: f32,
    );
    /// x_t, ε, t and the embedding rows of a training batch, the draws' offsets rng_offset(counter, rel_…)
    /// (`counter`: a `DeviceCounter` address or 0).
    fn diffusion_training_batch(
        x0: &CudaStorage, xt: &mut CudaStorage, noise: &mut CudaStorage, t_out: &mut CudaStorage,
        emb: &mut CudaStorage, n: i32, per_sample: i32, samples: i32, dim: i32, sqrt_ab: &CudaStorage,
        sqrt_1mab: &CudaStorage, emb_table: &CudaStorage, steps: i32, seed: u64, counter: u64, rel_t: u64,
        rel_eps: u64,
    );
    /// counters[0] += noise_draws, counters[1] += dropout_draws (one thread).
    fn diffusion_advance_counters(counters: &mut CudaSlice<u64>, noise_draws: u64, dropout_draws: u64);
}

fn on_device<'a>(t: &'a Tensor, what: &str) -> Result<&'a CudaStorage> {
    match t.storage() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg(format!("training_batch: the {what} table is not on the CUDA device"))),
    }
}

/// (x_t, ε, t, embedding rows) of `n` samples in one launch (see `super::training_batch`).
pub(super) fn training_batch(
    x: &CudaStorage,
    n: usize,
    tables: &BatchTables,
    draw_t: Philox,
    draw_eps: Philox,
) -> Result<(CudaStorage, CudaStorage, CudaStorage, CudaStorage)> {
    let be = x.backend();
    let (total, dim, steps) = (x.len(), tables.emb.shape()[1], tables.sqrt_ab.numel());
    let (counter, rel_t) = draw_t.device_offset(be)?;
    let (counter_eps, rel_eps) = draw_eps.device_offset(be)?;
    if counter != counter_eps || draw_t.seed() != draw_eps.seed() {
        return Err(Error::msg("training_batch: the two draws must come from one stream"));
    }
    let op = "training_batch";
    let (total_i, per_i, n_i, dim_i, steps_i) =
        (int(op, total)?, int(op, total / n)?, int(op, n)?, int(op, dim)?, int(op, steps)?);
    int(op, n * dim)?;
    let (mut xt, mut noise, mut t, mut emb) = (be.empty(total)?, be.empty(total)?, be.empty(n)?, be.empty(n * dim)?);
    // Thread i writes elements 4i..4i+3 of xt and noise and entry i of emb (t at each row's first entry); reads the
    // same elements of x0 and one entry of each table per sample.
    diffusion_training_batch(
        be,
        grid_1d(total.div_ceil(4).max(n * dim)),
        x,
        &mut xt,
        &mut noise,
        &mut t,
        &mut emb,
        total_i,
        per_i,
        n_i,
        dim_i,
        on_device(&tables.sqrt_ab, "√ᾱ")?,
        on_device(&tables.sqrt_1mab, "√(1 − ᾱ)")?,
        on_device(&tables.emb, "embedding")?,
        steps_i,
        draw_t.seed(),
        counter,
        rel_t,
        rel_eps,
    )?;
    Ok((xt, noise, t, emb))
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

/// The end of a training step: the device-counted noise and dropout offsets in `counters` move on by the step's
/// draws (one thread; it runs after every kernel of the step in stream order).
pub(crate) fn advance_counters(
    be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    counters: &mut CudaSlice<u64>,
    noise_draws: u64,
    dropout_draws: u64,
) -> Result<()> {
    let one = crate::backend::kernels::blocks((1, 1, 1), 1);
    diffusion_advance_counters(be, one, counters, noise_draws, dropout_draws)
}
