//! The noise schedule β_1..β_T and every quantity derived from it, in f64 (rounded to f32 only where a kernel
//! uses them). Index `t` runs 0..T as in the official code: index 0 is the paper's t = 1.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BetaSchedule {
    /// β linear from `start` to `end` (the paper: 1e-4 → 0.02).
    Linear { start: f64, end: f64 },
    /// Nichol & Dhariwal's cosine schedule with offset `s` (0.008), β capped at 0.999.
    Cosine { s: f64 },
}

impl BetaSchedule {
    pub const PAPER: BetaSchedule = BetaSchedule::Linear { start: 1e-4, end: 0.02 };

    pub fn betas(&self, steps: usize) -> Result<Vec<f64>> {
        if steps < 2 {
            return Err(Error::msg(format!("a schedule needs at least 2 steps, got {steps}")));
        }
        Ok(match *self {
            BetaSchedule::Linear { start, end } => {
                (0..steps).map(|i| start + (end - start) * i as f64 / (steps - 1) as f64).collect()
            }
            BetaSchedule::Cosine { s } => {
                let f = |t: f64| ((t / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..steps).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999)).collect()
            }
        })
    }
}

/// σ_t² used by the reverse process (paper Sec. 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// σ_t² = β_t (the paper's CIFAR-10 choice; diffusers `fixed_large`).
    FixedLarge,
    /// σ_t² = β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (diffusers `fixed_small`).
    FixedSmall,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// β̃_t, the variance of q(x_{t−1} | x_t, x_0).
    pub posterior_variance: Vec<f64>,
    /// log β̃_t with the t = 0 entry replaced by β̃_1 (β̃_0 = 0), as the official code.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// μ̃(x_t, x_0) = coef1 · x_0 + coef2 · x_t.
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

impl Schedule {
    pub fn new(kind: BetaSchedule, steps: usize) -> Result<Schedule> {
        Schedule::from_betas(kind.betas(steps)?)
    }

    /// The paper's schedule: linear 1e-4 → 0.02 over T = 1000.
    pub fn paper() -> Schedule {
        Schedule::new(BetaSchedule::PAPER, 1000).expect("the paper's schedule is valid")
    }

    pub fn from_betas(betas: Vec<f64>) -> Result<Schedule> {
        if betas.iter().any(|&b| !(b > 0.0 && b < 1.0)) {
            return Err(Error::msg("every β must lie in (0, 1)"));
        }
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = Vec::with_capacity(betas.len());
        let mut acc = 1.0;
        for a in &alphas {
            acc *= a;
            alphas_cumprod.push(acc);
        }
        let alphas_cumprod_prev: Vec<f64> =
            std::iter::once(1.0).chain(alphas_cumprod[..alphas_cumprod.len() - 1].iter().copied()).collect();
        let map = |v: &[f64], f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(x)).collect::<Vec<f64>>();
        let posterior_variance: Vec<f64> =
            (0..betas.len()).map(|t| betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t])).collect();
        let posterior_log_variance_clipped: Vec<f64> = (0..betas.len())
            .map(|t| if t == 0 { posterior_variance[1].ln() } else { posterior_variance[t].ln() })
            .collect();
        Ok(Schedule {
            sqrt_alphas_cumprod: map(&alphas_cumprod, &f64::sqrt),
            sqrt_one_minus_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 - a).sqrt()),
            sqrt_recip_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 / a).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 / a - 1.0).sqrt()),
            posterior_mean_coef1: (0..betas.len())
                .map(|t| betas[t] * alphas_cumprod_prev[t].sqrt() / (1.0 - alphas_cumprod[t]))
                .collect(),
            posterior_mean_coef2: (0..betas.len())
                .map(|t| (1.0 - alphas_cumprod_prev[t]) * alphas[t].sqrt() / (1.0 - alphas_cumprod[t]))
                .collect(),
            posterior_variance,
            posterior_log_variance_clipped,
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
        })
    }

    /// T, the number of diffusion steps.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// σ_t for the reverse step from index t (0 at t = 0, where no noise is added).
    pub fn sigma(&self, t: usize, variance: Variance) -> f64 {
        if t == 0 {
            return 0.0;
        }
        match variance {
            Variance::FixedLarge => self.betas[t].sqrt(),
            Variance::FixedSmall => (0.5 * self.posterior_log_variance_clipped[t]).exp(),
        }
    }
}
