//! The negative log-likelihood bound in bits/dim (the paper's Table 2 NLL), as the official code's
//! `calc_bpd_loop`: for every t = T−1 … 0, draw fresh noise, form x_t ~ q(x_t | x_0) and add the term
//!   L_t = KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t))       (t > 0; `normal_kl`)
//!   L_0 = −log p(x_0 | x_1), the discretized Gaussian decoder (t = 0; `discretized_gaussian_log_likelihood`)
//! each averaged over dimensions and divided by ln 2, then the prior term L_T = KL(q(x_T | x_0) ‖ N(0, I)).
//! p's mean comes from the ε-model through x̂0 (clipped to [−1, 1] when the diffusion clips), its variance is
//! the fixed one: β_t with β̃_1 at t = 0 ("fixed_large"), or β̃_t ("fixed_small"). All of it is f64 on the CPU;
//! only the model runs on the device.

use std::f64::consts::{LN_2, PI};

use crate::diffusion::{Diffusion, EpsModel, Variance};
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

/// KL(N(μ1, e^lv1) ‖ N(μ2, e^lv2)) per element (the official `normal_kl`).
pub fn normal_kl(mean1: f64, logvar1: f64, mean2: f64, logvar2: f64) -> f64 {
    0.5 * (-1.0 + logvar2 - logvar1 + (logvar1 - logvar2).exp() + (mean1 - mean2).powi(2) * (-logvar2).exp())
}

/// The official code's tanh approximation of the standard normal CDF.
fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// log p(x) of a pixel x ∈ [−1, 1] (on the 1/127.5 grid) under a Gaussian discretized to 256 bins, with the
/// edge bins extended to ±∞.
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let centered = x - mean;
    let inv_stdv = (-log_scale).exp();
    let cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0));
    if x < -0.999 {
        cdf_plus.max(1e-12).ln()
    } else if x > 0.999 {
        (1.0 - cdf_min).max(1e-12).ln()
    } else {
        (cdf_plus - cdf_min).max(1e-12).ln()
    }
}

/// Bits/dim of a batch: per image, the total and its parts.
#[derive(Clone, Debug)]
pub struct Bpd {
    /// Per image: Σ_t L_t + L_T.
    pub total: Vec<f64>,
    /// Per image: L_T.
    pub prior: Vec<f64>,
    /// Per timestep index t (0..T), the batch mean of L_t.
    pub terms: Vec<f64>,
}

/// The model's log variance at index t.
fn model_log_variance(d: &Diffusion, t: usize) -> f64 {
    let s = &d.schedule;
    match d.variance {
        Variance::FixedLarge if t == 0 => s.posterior_variance[1].ln(),
        Variance::FixedLarge => s.betas[t].ln(),
        Variance::FixedSmall => s.posterior_log_variance_clipped[t],
    }
}

/// The bound for clean images x0 [N, C, H, W] in [−1, 1]; the noise for t = T−1 … 0 comes from `rng` in that
/// order, one N·C·H·W draw per t.
pub fn bits_per_dim(model: &mut EpsModel, d: &Diffusion, x0: &Tensor, rng: &mut Philox) -> Result<Bpd> {
    let (n, c, h, w) = x0.dims4("nll")?;
    let dim = c * h * w;
    if n == 0 {
        return Err(Error::msg("nll: no images"));
    }
    let s = &d.schedule;
    let steps = s.steps();
    let device = x0.device();
    let x0v: Vec<f64> = x0.to_vec()?.into_iter().map(f64::from).collect();
    let mut total = vec![0.0f64; n];
    let mut terms = vec![0.0f64; steps];
    for t in (0..steps).rev() {
        let noise = rng.normal(n * dim);
        // x_t as the model sees it (f32), and the same values in f64 for the bound.
        let xt32: Vec<f32> = x0v
            .iter()
            .zip(&noise)
            .map(|(&x, &e)| (s.sqrt_alphas_cumprod[t] * x + s.sqrt_one_minus_alphas_cumprod[t] * e as f64) as f32)
            .collect();
        let xt = Tensor::from_vec(xt32.clone(), &[n, c, h, w])?.to_device(&device)?;
        let eps = model(&xt, &vec![t as f32; n])?.to_vec()?;
        crate::ensure_shape!(
            eps.len() == n * dim,
            "nll",
            "the model returned {} values for {:?}",
            eps.len(),
            x0.shape()
        );
        let model_logvar = model_log_variance(d, t);
        let true_logvar = s.posterior_log_variance_clipped[t];
        for (i, total_i) in total.iter_mut().enumerate() {
            let mut sum = 0.0f64;
            for k in i * dim..(i + 1) * dim {
                let x_t = xt32[k] as f64;
                let mut x0_pred =
                    s.sqrt_recip_alphas_cumprod[t] * x_t - s.sqrt_recipm1_alphas_cumprod[t] * eps[k] as f64;
                if d.clip_x0 {
                    x0_pred = x0_pred.clamp(-1.0, 1.0);
                }
                let model_mean = s.posterior_mean_coef1[t] * x0_pred + s.posterior_mean_coef2[t] * x_t;
                sum += if t == 0 {
                    -discretized_gaussian_log_likelihood(x0v[k], model_mean, 0.5 * model_logvar)
                } else {
                    let true_mean = s.posterior_mean_coef1[t] * x0v[k] + s.posterior_mean_coef2[t] * x_t;
                    normal_kl(true_mean, true_logvar, model_mean, model_logvar)
                };
            }
            let bpd = sum / dim as f64 / LN_2;
            *total_i += bpd;
            terms[t] += bpd / n as f64;
        }
    }
    let last = steps - 1;
    let prior: Vec<f64> = (0..n)
        .map(|i| {
            let logvar = (1.0 - s.alphas_cumprod[last]).ln();
            let kl: f64 = x0v[i * dim..(i + 1) * dim]
                .iter()
                .map(|&x| normal_kl(s.sqrt_alphas_cumprod[last] * x, logvar, 0.0, 0.0))
                .sum();
            kl / dim as f64 / LN_2
        })
        .collect();
    total.iter_mut().zip(&prior).for_each(|(t, p)| *t += p);
    Ok(Bpd { total, prior, terms })
}
