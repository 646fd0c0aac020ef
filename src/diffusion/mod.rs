//! The diffusion process: the forward noising q(x_t | x_0), the simplified training loss L_simple, and the
//! reverse samplers (Algorithm 2 and DDIM). The model is any ε-predictor: `FnMut(x_t, t) -> ε̂`.

pub mod graphed;
pub mod schedule;

use crate::config::DiffusionConfig;
pub use crate::ops::diffusion_step::BatchTables;
use crate::ops::diffusion_step::{q_sample, reverse_step, training_batch, StepCoefs};
use crate::ops::embedding::timestep_embedding;
use crate::rng::Philox;
use crate::{ensure_shape, Device, Error, Result, Tensor};
pub use schedule::{BetaSchedule, Schedule, Variance};

/// An ε-predictor: given x_t [N, C, H, W] and one timestep per sample, return ε̂ of the same shape.
pub type EpsModel<'a> = dyn FnMut(&Tensor, &[f32]) -> Result<Tensor> + 'a;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Algorithm 2: all T steps.
    Ddpm,
    /// DDIM (Song et al. 2021) over `steps` evenly spaced timesteps, stochasticity η.
    Ddim { steps: usize, eta: f64 },
}

pub struct Diffusion {
    pub schedule: Schedule,
    pub variance: Variance,
    pub clip_x0: bool,
}

/// What a sampler shows its observer after each reverse step.
pub struct Step<'a> {
    /// Steps done so far (1-based) and in all.
    pub done: usize,
    pub total: usize,
    /// The timestep index just processed.
    pub t: usize,
    pub x_t: &'a Tensor,
    pub eps: &'a Tensor,
    /// x_{t−1}, the chain's new state.
    pub x_prev: &'a Tensor,
    coefs: StepCoefs,
}

impl Step<'_> {
    /// x̂0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t (clipped when the sampler clips): the paper's Fig. 6 predictions.
    pub fn x0_pred(&self) -> Result<Tensor> {
        let c = StepCoefs { c_x0: 1.0, c_xt: 0.0, c_eps: 0.0, sigma: 0.0, ..self.coefs };
        reverse_step(self.x_t, self.eps, None, c)
    }
}

/// The inputs of one L_simple evaluation: the noised images, their timesteps and the noise to predict.
pub struct TrainingBatch {
    pub x_t: Tensor,
    pub t: Vec<f32>,
    pub noise: Tensor,
}

/// `training_batch_embedded`'s L_simple inputs: the noised images, their timesteps (f32 [N], on x0's device), the
/// noise to predict and the timesteps' embedding rows [N, dim].
pub struct EmbeddedBatch {
    pub x_t: Tensor,
    pub t: Tensor,
    pub noise: Tensor,
    pub emb: Tensor,
}

impl Diffusion {
    pub fn new(cfg: &DiffusionConfig) -> Result<Diffusion> {
        Ok(Diffusion {
            schedule: Schedule::new(cfg.beta_schedule, cfg.steps)?,
            variance: cfg.variance,
            clip_x0: cfg.clip_x0,
        })
    }

    /// x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, one t per sample.
    pub fn q_sample(&self, x0: &Tensor, t: &[usize], noise: &Tensor) -> Result<Tensor> {
        if let Some(&bad) = t.iter().find(|&&t| t >= self.schedule.steps()) {
            return Err(Error::msg(format!("timestep {bad} out of range 0..{}", self.schedule.steps())));
        }
        let a: Vec<f32> = t.iter().map(|&t| self.schedule.sqrt_alphas_cumprod[t] as f32).collect();
        let b: Vec<f32> = t.iter().map(|&t| self.schedule.sqrt_one_minus_alphas_cumprod[t] as f32).collect();
        q_sample(x0, noise, &a, &b)
    }

    /// Draw t ~ U{0..T−1} and ε ~ N(0, I) for a batch of clean images and noise them (L_simple's inputs).
    pub fn training_batch(&self, x0: &Tensor, rng: &mut Philox) -> Result<TrainingBatch> {
        let n = x0.shape()[0];
        let steps = self.schedule.steps();
        let t: Vec<usize> =
            rng.uniform(n).iter().map(|&u| (((u as f64) * steps as f64) as usize).min(steps - 1)).collect();
        // Generated where x0 lives (the same Philox stream on either device): no host→device copy of the noise.
        let noise = rng.normal_on(x0.shape(), &x0.device())?;
        let x_t = self.q_sample(x0, &t, &noise)?;
        Ok(TrainingBatch { x_t, t: t.iter().map(|&t| t as f32).collect(), noise })
    }

    /// The per-timestep tables of `training_batch_embedded` on `device`: √ᾱ_t, √(1 − ᾱ_t) in f32 and the
    /// sinusoidal embedding rows of `dim` values of every t (made once per run).
    pub fn batch_tables(&self, dim: usize, device: &Device) -> Result<BatchTables> {
        let s = &self.schedule;
        let steps = s.steps();
        let a: Vec<f32> = s.sqrt_alphas_cumprod.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = s.sqrt_one_minus_alphas_cumprod.iter().map(|&v| v as f32).collect();
        let ts: Vec<f32> = (0..steps).map(|t| t as f32).collect();
        Ok(BatchTables {
            sqrt_ab: Tensor::from_vec(a, &[steps])?.to_device(device)?,
            sqrt_1mab: Tensor::from_vec(b, &[steps])?.to_device(device)?,
            emb: timestep_embedding(&ts, dim)?.to_device(device)?,
        })
    }

    /// `training_batch` with the timesteps kept where x0 lives and their embedding rows gathered from `tables`
    /// (one fused pass on CUDA, `ops::diffusion_step::training_batch`): the same two draws from `rng`, the same t
    /// and ε; the model takes `emb` through `UNet::forward_embedded`.
    pub fn training_batch_embedded(
        &self,
        x0: &Tensor,
        rng: &mut Philox,
        tables: &BatchTables,
    ) -> Result<EmbeddedBatch> {
        ensure_shape!(
            tables.sqrt_ab.numel() == self.schedule.steps(),
            "training_batch",
            "tables of {} steps for a schedule of {}",
            tables.sqrt_ab.numel(),
            self.schedule.steps()
        );
        let (draw_t, draw_eps) = (rng.take_draw(), rng.take_draw());
        let (x_t, noise, t, emb) = training_batch(x0, tables, draw_t, draw_eps)?;
        Ok(EmbeddedBatch { x_t, noise, t, emb })
    }

    /// The coefficients of Algorithm 2's step from index t, in the official x̂0 form:
    /// x̂0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂ (clipped if configured), x_{t−1} = μ̃(x_t, x̂0) + σ_t z.
    pub fn ddpm_coefs(&self, t: usize) -> StepCoefs {
        let s = &self.schedule;
        StepCoefs {
            recip: s.sqrt_recip_alphas_cumprod[t] as f32,
            recipm1: s.sqrt_recipm1_alphas_cumprod[t] as f32,
            clip: self.clip_x0,
            c_x0: s.posterior_mean_coef1[t] as f32,
            c_xt: s.posterior_mean_coef2[t] as f32,
            c_eps: 0.0,
            sigma: s.sigma(t, self.variance) as f32,
        }
    }

    /// The timesteps DDIM visits, high to low: 0, T/K, 2T/K, ... ("leading" spacing, as diffusers).
    pub fn ddim_timesteps(&self, steps: usize) -> Result<Vec<usize>> {
        let total = self.schedule.steps();
        if steps == 0 || steps > total {
            return Err(Error::msg(format!("DDIM steps must be in 1..={total}, got {steps}")));
        }
        let ratio = total / steps;
        Ok((0..steps).rev().map(|i| i * ratio).collect())
    }

    /// DDIM step from t to t_prev (None = to x0, with ᾱ = 1): x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z.
    pub fn ddim_coefs(&self, t: usize, t_prev: Option<usize>, eta: f64) -> StepCoefs {
        let s = &self.schedule;
        let a_t = s.alphas_cumprod[t];
        let a_prev = t_prev.map_or(1.0, |p| s.alphas_cumprod[p]);
        let sigma = eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).sqrt();
        StepCoefs {
            recip: s.sqrt_recip_alphas_cumprod[t] as f32,
            recipm1: s.sqrt_recipm1_alphas_cumprod[t] as f32,
            clip: self.clip_x0,
            c_x0: a_prev.sqrt() as f32,
            c_xt: 0.0,
            c_eps: (1.0 - a_prev - sigma * sigma).max(0.0).sqrt() as f32,
            sigma: sigma as f32,
        }
    }

    /// The steps a sampler takes, in order: each timestep index and its step's coefficients.
    pub fn plan(&self, sampler: Sampler) -> Result<Vec<(usize, StepCoefs)>> {
        Ok(match sampler {
            Sampler::Ddpm => (0..self.schedule.steps()).rev().map(|t| (t, self.ddpm_coefs(t))).collect(),
            Sampler::Ddim { steps, eta } => {
                let ts = self.ddim_timesteps(steps)?;
                ts.iter().enumerate().map(|(i, &t)| (t, self.ddim_coefs(t, ts.get(i + 1).copied(), eta))).collect()
            }
        })
    }

    /// Generate samples from x_T ~ N(0, I). `on_step` sees every step (for progress bars and the
    /// progressive-generation figure).
    pub fn sample(
        &self,
        model: &mut EpsModel,
        shape: &[usize],
        sampler: Sampler,
        rng: &mut Philox,
        device: &Device,
        on_step: &mut dyn FnMut(&Step),
    ) -> Result<Tensor> {
        let n = shape[0];
        let plan = self.plan(sampler)?;
        let mut x = rng.normal_on(shape, device)?;
        let total = plan.len();
        for (i, (t, coefs)) in plan.into_iter().enumerate() {
            let eps = model(&x, &vec![t as f32; n])?;
            let z = if coefs.sigma != 0.0 { Some(rng.normal_on(shape, device)?) } else { None };
            let x_prev = reverse_step(&x, &eps, z.as_ref(), coefs)?;
            on_step(&Step { done: i + 1, total, t, x_t: &x, eps: &eps, x_prev: &x_prev, coefs });
            x = x_prev;
        }
        Ok(x)
    }
}
