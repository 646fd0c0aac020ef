//! The fused per-element diffusion steps: the forward noising q(x_t | x_0) used by L_simple, and one reverse step
//! of Algorithm 2 (DDPM) or DDIM. They carry no gradient (training differentiates only the model), so they work on
//! Tensors. Coefficients come from `diffusion::Schedule` in f64 and are rounded to f32 here.

use crate::backend::Storage;
use crate::rng::Philox;
use crate::{ensure_shape, Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// x_t = a[n] · x0 + b[n] · noise for each sample n (a = √ᾱ_t, b = √(1 − ᾱ_t) at that sample's t).
pub fn q_sample(x0: &Tensor, noise: &Tensor, a: &[f32], b: &[f32]) -> Result<Tensor> {
    ensure_shape!(x0.shape() == noise.shape(), "q_sample", "x0 {:?} vs noise {:?}", x0.shape(), noise.shape());
    ensure_shape!(x0.rank() >= 1, "q_sample", "x0 needs a batch dimension");
    let n = x0.shape()[0];
    ensure_shape!(a.len() == n && b.len() == n, "q_sample", "{} samples but {}/{} coefficients", n, a.len(), b.len());
    let per = x0.numel() / n.max(1);
    let storage = match (x0.storage(), noise.storage()) {
        (Storage::Cpu(x), Storage::Cpu(e)) => {
            let mut out = vec![0.0f32; x.len()];
            for (s, o) in out.chunks_mut(per.max(1)).enumerate() {
                let (xs, es) = (&x[s * per..(s + 1) * per], &e[s * per..(s + 1) * per]);
                for ((o, &xv), &ev) in o.iter_mut().zip(xs).zip(es) {
                    *o = a[s] * xv + b[s] * ev;
                }
            }
            Storage::Cpu(out)
        }
        (Storage::Cuda(x), Storage::Cuda(e)) => Storage::Cuda(cuda::q_sample(x, e, a, b, per)?),
        _ => return Err(Tensor::device_mismatch("q_sample", &[x0, noise])),
    };
    Tensor::from_storage(storage, x0.shape())
}

/// The per-timestep tables `training_batch` gathers from, made once per run on the batch's device.
pub struct BatchTables {
    /// √ᾱ_t and √(1 − ᾱ_t) rounded to f32 (as `Diffusion::q_sample` rounds them), [T] each.
    pub sqrt_ab: Tensor,
    pub sqrt_1mab: Tensor,
    /// The sinusoidal timestep embedding of every t, [T, dim] (`timestep_embedding`'s rows, bit for bit).
    pub emb: Tensor,
}

/// L_simple's inputs, made where x0 lives: per sample s, t_s = min(⌊u_s · T⌋, T − 1) (u_s element s of the uniform
/// draw `draw_t`, the product in f64, as `Diffusion::training_batch`), ε the normal draw `draw_eps` (as
/// `Philox::normal_on`), x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, and the embedding rows of the t_s. Returns (x_t, ε, t as f32
/// [N], embedding [N, dim]). On CUDA one kernel does it all and takes the draws' offsets from their device counter
/// when the stream has one (`Philox::counted_on`), so a captured step draws anew at every replay; the values are
/// those of `Diffusion::training_batch` on that device (x_t in the FMA form its q_sample kernel uses; the CPU's
/// unfused form differs by rounding).
pub fn training_batch(
    x0: &Tensor,
    tables: &BatchTables,
    draw_t: Philox,
    draw_eps: Philox,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    ensure_shape!(x0.rank() >= 1 && x0.shape()[0] > 0, "training_batch", "x0 {:?} has no samples", x0.shape());
    let steps = tables.sqrt_ab.numel();
    ensure_shape!(
        steps > 0 && tables.sqrt_1mab.numel() == steps && tables.emb.rank() == 2 && tables.emb.shape()[0] == steps,
        "training_batch",
        "tables of {steps}, {} and {:?} rows",
        tables.sqrt_1mab.numel(),
        tables.emb.shape()
    );
    let (n, dim) = (x0.shape()[0], tables.emb.shape()[1]);
    let per = x0.numel() / n;
    let (x_t, noise, t, emb) = match x0.storage() {
        Storage::Cpu(x) => {
            let t: Vec<usize> =
                { draw_t }.uniform(n).iter().map(|&u| (((u as f64) * steps as f64) as usize).min(steps - 1)).collect();
            let e = { draw_eps }.normal(x.len());
            let (a, b, table) = (tables.sqrt_ab.cpu_data()?, tables.sqrt_1mab.cpu_data()?, tables.emb.cpu_data()?);
            let mut out = vec![0.0f32; x.len()];
            for (s, &ts) in t.iter().enumerate() {
                let r = s * per..(s + 1) * per;
                for ((o, &xv), &ev) in out[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&e[r]) {
                    *o = a[ts] * xv + b[ts] * ev;
                }
            }
            let emb = t.iter().flat_map(|&ts| table[ts * dim..(ts + 1) * dim].iter().copied()).collect();
            let t = t.iter().map(|&ts| ts as f32).collect();
            (Storage::Cpu(out), Storage::Cpu(e), Storage::Cpu(t), Storage::Cpu(emb))
        }
        Storage::Cuda(x) => {
            let parts = cuda::training_batch(x, n, tables, draw_t, draw_eps)?;
            (Storage::Cuda(parts.0), Storage::Cuda(parts.1), Storage::Cuda(parts.2), Storage::Cuda(parts.3))
        }
    };
    Ok((
        Tensor::from_storage(x_t, x0.shape())?,
        Tensor::from_storage(noise, x0.shape())?,
        Tensor::from_storage(t, &[n])?,
        Tensor::from_storage(emb, &[n, dim])?,
    ))
}

/// The coefficients of one reverse step at a single t (the whole batch shares t when sampling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    /// x̂0 = recip · x_t − recipm1 · ε̂
    pub recip: f32,
    pub recipm1: f32,
    /// Clip x̂0 to [−1, 1] (the official code and diffusers `clip_sample`).
    pub clip: bool,
    /// mean = c_x0 · x̂0 + c_xt · x_t (+ c_eps · ε̂ for DDIM)
    pub c_x0: f32,
    pub c_xt: f32,
    pub c_eps: f32,
    /// x_{t−1} = mean + sigma · z
    pub sigma: f32,
}

/// x_{t−1} = c_x0 · x̂0 + c_xt · x_t + c_eps · ε̂ + σ z, with x̂0 = recip · x_t − recipm1 · ε̂ (clipped if asked).
/// `noise` may be `None` when σ = 0.
pub fn reverse_step(x_t: &Tensor, eps: &Tensor, noise: Option<&Tensor>, c: StepCoefs) -> Result<Tensor> {
    ensure_shape!(x_t.shape() == eps.shape(), "reverse_step", "x_t {:?} vs eps {:?}", x_t.shape(), eps.shape());
    if let Some(z) = noise {
        ensure_shape!(z.shape() == x_t.shape(), "reverse_step", "noise {:?} vs x_t {:?}", z.shape(), x_t.shape());
    }
    if c.sigma != 0.0 && noise.is_none() {
        return Err(Error::msg("reverse_step: σ > 0 needs a noise tensor"));
    }
    let mismatch = || Tensor::device_mismatch("reverse_step", &[x_t, eps].into_iter().chain(noise).collect::<Vec<_>>());
    let storage = match (x_t.storage(), eps.storage(), noise.map(|z| z.storage())) {
        (Storage::Cpu(x), Storage::Cpu(e), z) => {
            let z = match z {
                Some(Storage::Cpu(z)) => Some(z.as_slice()),
                None => None,
                Some(_) => return Err(mismatch()),
            };
            let step = |i: usize, xv: f32, ev: f32| {
                let mut x0 = c.recip * xv - c.recipm1 * ev;
                if c.clip {
                    x0 = x0.clamp(-1.0, 1.0);
                }
                let mean = c.c_x0 * x0 + c.c_xt * xv + c.c_eps * ev;
                mean + z.map_or(0.0, |z| c.sigma * z[i])
            };
            Storage::Cpu((0..x.len()).map(|i| step(i, x[i], e[i])).collect())
        }
        (Storage::Cuda(x), Storage::Cuda(e), z) => {
            let z = match z {
                Some(Storage::Cuda(z)) => Some(z),
                None => None,
                Some(_) => return Err(mismatch()),
            };
            Storage::Cuda(cuda::reverse_step(x, e, z, &c)?)
        }
        _ => return Err(mismatch()),
    };
    Tensor::from_storage(storage, x_t.shape())
}
