//! The schedule against closed forms, q_sample's moments, and single reverse steps against hand computations.
mod common;
use common::*;
use ddpm_cuda::config::DiffusionConfig;
use ddpm_cuda::diffusion::{BetaSchedule, Diffusion, Schedule, Variance};
use ddpm_cuda::ops::diffusion_step::reverse_step;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::Tensor;

fn paper(variance: Variance, clip_x0: bool) -> Diffusion {
    Diffusion::new(&DiffusionConfig { steps: 1000, beta_schedule: BetaSchedule::PAPER, variance, clip_x0 }).unwrap()
}

#[test]
fn linear_schedule_matches_closed_forms() {
    let s = Schedule::paper();
    assert_eq!(s.steps(), 1000);
    assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
    assert!((s.betas[500] - (1e-4 + (0.02 - 1e-4) * 500.0 / 999.0)).abs() < 1e-15);
    // ᾱ_t = Π (1 − β_s), recomputed independently in log space.
    for t in [0usize, 1, 10, 499, 999] {
        let log: f64 = (0..=t).map(|i| (1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0)).ln()).sum();
        assert!((s.alphas_cumprod[t] - log.exp()).abs() < 1e-12, "t={t}");
        assert!((s.sqrt_one_minus_alphas_cumprod[t] - (1.0 - log.exp()).sqrt()).abs() < 1e-12);
    }
    // Known value of the paper's schedule: ᾱ_T ≈ 4.04e-5 (x_T is nearly pure noise).
    assert!((s.alphas_cumprod[999] - 4.036e-5).abs() < 1e-7, "{}", s.alphas_cumprod[999]);
    // β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t); β̃_0 = 0; the posterior mean coefficients sum to the right identity:
    // μ̃(x, x) for x_0 = x_t = x equals (coef1 + coef2) x.
    assert_eq!(s.posterior_variance[0], 0.0);
    let t = 300;
    let bt = s.betas[t] * (1.0 - s.alphas_cumprod[t - 1]) / (1.0 - s.alphas_cumprod[t]);
    assert!((s.posterior_variance[t] - bt).abs() < 1e-15);
    assert!((s.posterior_log_variance_clipped[0] - s.posterior_variance[1].ln()).abs() < 1e-15);
    let c1 = s.betas[t] * s.alphas_cumprod[t - 1].sqrt() / (1.0 - s.alphas_cumprod[t]);
    assert!((s.posterior_mean_coef1[t] - c1).abs() < 1e-15);
}

#[test]
fn cosine_schedule_matches_closed_form() {
    let s = Schedule::new(BetaSchedule::Cosine { s: 0.008 }, 1000).unwrap();
    let f = |t: f64| ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    for t in [0usize, 100, 500, 900] {
        assert!((s.alphas_cumprod[t] - f(t as f64 + 1.0) / f(0.0)).abs() < 1e-9, "t={t}");
    }
    assert!(s.betas.iter().all(|&b| b <= 0.999));
}

#[test]
fn bad_schedules_are_errors() {
    assert!(Schedule::new(BetaSchedule::Linear { start: 0.0, end: 0.02 }, 1000).is_err());
    assert!(Schedule::new(BetaSchedule::PAPER, 1).is_err());
}

#[test]
fn q_sample_has_the_right_moments() {
    let d = paper(Variance::FixedLarge, true);
    let (n, per) = (4, 50_000);
    let x0 =
        Tensor::from_vec((0..n * per).map(|i| if i / per % 2 == 0 { 0.5 } else { -0.8 }).collect(), &[n, per]).unwrap();
    let t = [0usize, 100, 500, 999];
    let noise = Philox::new(7).normal_tensor(&[n, per]).unwrap();
    let xt = d.q_sample(&x0, &t, &noise).unwrap().to_vec().unwrap();
    for (s, &ti) in t.iter().enumerate() {
        let x0v = if s % 2 == 0 { 0.5 } else { -0.8 };
        let ac = d.schedule.alphas_cumprod[ti];
        let vals = &xt[s * per..(s + 1) * per];
        let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
        let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
        assert!((mean - ac.sqrt() * x0v).abs() < 0.015, "t={ti}: mean {mean}");
        assert!((var - (1.0 - ac)).abs() < 0.02 * (1.0 - ac) + 1e-4, "t={ti}: var {var}");
    }
    assert!(d.q_sample(&x0, &[0, 1, 2, 1000], &noise).is_err(), "t out of range");
}

#[test]
fn one_ddpm_step_matches_a_hand_computation() {
    // Algorithm 2 with clipping off: x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε) / √α_t + σ_t z, σ_t² = β_t.
    let d = paper(Variance::FixedLarge, false);
    let s = &d.schedule;
    let t = 500;
    let x = rand_tensor(&[2, 3, 4, 4], 1);
    let e = rand_tensor(&[2, 3, 4, 4], 2);
    let z = rand_tensor(&[2, 3, 4, 4], 3);
    let got = reverse_step(&x, &e, Some(&z), d.ddpm_coefs(t)).unwrap().to_vec().unwrap();
    let (xv, ev, zv) = (x.to_vec().unwrap(), e.to_vec().unwrap(), z.to_vec().unwrap());
    for i in 0..xv.len() {
        let (xt, eps, zz) = (xv[i] as f64, ev[i] as f64, zv[i] as f64);
        let want =
            (xt - s.betas[t] / (1.0 - s.alphas_cumprod[t]).sqrt() * eps) / s.alphas[t].sqrt() + s.betas[t].sqrt() * zz;
        assert!((got[i] as f64 - want).abs() < 2e-5, "{i}: {} vs {want}", got[i]);
    }
    // fixedsmall uses σ_t = √β̃_t, and at t = 0 no noise is added.
    let small = paper(Variance::FixedSmall, false);
    assert!((small.ddpm_coefs(t).sigma as f64 - s.posterior_variance[t].sqrt()).abs() < 1e-7);
    assert_eq!(small.ddpm_coefs(0).sigma, 0.0);
    assert_eq!(d.ddpm_coefs(0).sigma, 0.0);
}

#[test]
fn clipped_step_clips_x0_prediction() {
    // With clipping, the mean is μ̃(x_t, clip(x̂0)) — computed here from the posterior's closed form.
    let d = paper(Variance::FixedLarge, true);
    let s = &d.schedule;
    let t = 900;
    let x = rand_tensor(&[1, 1, 8, 8], 4).scale(3.0).unwrap();
    let e = rand_tensor(&[1, 1, 8, 8], 5);
    let got = reverse_step(&x, &e, None, ddpm_cuda::ops::diffusion_step::StepCoefs { sigma: 0.0, ..d.ddpm_coefs(t) })
        .unwrap()
        .to_vec()
        .unwrap();
    let (xv, ev) = (x.to_vec().unwrap(), e.to_vec().unwrap());
    let ac = s.alphas_cumprod[t];
    let acp = s.alphas_cumprod[t - 1];
    for i in 0..xv.len() {
        let x0 = ((xv[i] as f64 - (1.0 - ac).sqrt() * ev[i] as f64) / ac.sqrt()).clamp(-1.0, 1.0);
        let mean =
            acp.sqrt() * s.betas[t] / (1.0 - ac) * x0 + s.alphas[t].sqrt() * (1.0 - acp) / (1.0 - ac) * xv[i] as f64;
        assert!((got[i] as f64 - mean).abs() < 2e-5, "{i}");
    }
}

#[test]
fn ddim_with_eta_zero_is_deterministic_and_exact_on_x0() {
    let d = paper(Variance::FixedLarge, false);
    let ts = d.ddim_timesteps(10).unwrap();
    assert_eq!(ts, vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    // If ε̂ is the true noise, one DDIM step from t lands exactly on q's mean path: x_prev = √ᾱ_prev x0 + √(1−ᾱ_prev) ε.
    let x0 = rand_tensor(&[1, 1, 4, 4], 6);
    let eps = rand_tensor(&[1, 1, 4, 4], 7);
    let xt = d.q_sample(&x0, &[800], &eps).unwrap();
    let prev = reverse_step(&xt, &eps, None, d.ddim_coefs(800, Some(700), 0.0)).unwrap();
    let want = d.q_sample(&x0, &[700], &eps).unwrap();
    assert!(prev.max_abs_diff(&want).unwrap() < 1e-5);
    // η = 1 recovers the DDPM posterior's σ (β̃).
    let c = d.ddim_coefs(500, Some(499), 1.0);
    assert!((c.sigma as f64 - d.schedule.posterior_variance[500].sqrt()).abs() < 1e-6);
    assert!(d.ddim_timesteps(0).is_err() && d.ddim_timesteps(1001).is_err());
}

/// Mean and (population) variance in f64.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (mean, v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n)
}

#[test]
fn q_sample_at_t0_and_t999_with_standard_error_tolerances() {
    let d = paper(Variance::FixedLarge, true);
    let per = 200_000;
    let x0s = [0.5f32, -0.8];
    for t in [0usize, 999] {
        let ac = d.schedule.alphas_cumprod[t];
        for &x0v in &x0s {
            let x0 = Tensor::from_vec(vec![x0v; per], &[1, per]).unwrap();
            let noise = Philox::new(t as u64 + 3).normal_tensor(&[1, per]).unwrap();
            let xt = d.q_sample(&x0, &[t], &noise).unwrap().to_vec().unwrap();
            // Element by element: √ᾱ_t x0 + √(1 − ᾱ_t) ε, in f64.
            for (x, e) in xt.iter().zip(noise.to_vec().unwrap()) {
                let want = ac.sqrt() * x0v as f64 + (1.0 - ac).sqrt() * e as f64;
                assert!((*x as f64 - want).abs() <= 1e-6, "t={t}: {x} vs {want}");
            }
            // Moments within 6 standard errors of q(x_t | x0) = N(√ᾱ x0, 1 − ᾱ).
            let (mean, var) = moments(&xt);
            let (want_mean, want_var) = (ac.sqrt() * x0v as f64, 1.0 - ac);
            let mean_tol = 6.0 * (want_var / per as f64).sqrt();
            let var_tol = 6.0 * want_var * (2.0 / per as f64).sqrt();
            assert!(
                (mean - want_mean).abs() <= mean_tol,
                "t={t} x0={x0v}: mean {mean} vs {want_mean} ± {mean_tol:.1e}"
            );
            assert!((var - want_var).abs() <= var_tol, "t={t} x0={x0v}: var {var} vs {want_var} ± {var_tol:.1e}");
            // The tolerances are tight enough to fail: at t = 0 the neighbouring step's variance (1 − ᾱ_1) is
            // outside them; at t = 999 a mean of x0 (no signal decay) or the coefficients swapped are.
            if t == 0 {
                assert!(((1.0 - d.schedule.alphas_cumprod[1]) - want_var).abs() > var_tol);
            } else {
                assert!((x0v as f64 - want_mean).abs() > mean_tol && (ac - want_var).abs() > var_tol);
            }
        }
    }
}

/// `training_batch` draws t ~ U{0, …, T−1}: a chi-square test over all 1000 values (10⁶ draws, 1000 expected
/// per value) and both ends explicitly, so an off-by-one range (1..T, or 0..T−1 never reaching T−1) fails.
#[test]
fn training_batch_draws_t_uniformly_over_every_step() {
    let d = paper(Variance::FixedLarge, true);
    let n = 1_000_000;
    let x0 = Tensor::from_vec(vec![0.0; n], &[n, 1]).unwrap();
    let mut rng = Philox::new(2024);
    let batch = d.training_batch(&x0, &mut rng).unwrap();
    let mut counts = vec![0u64; 1000];
    for &t in &batch.t {
        assert!(t.fract() == 0.0 && (0.0..1000.0).contains(&t), "t = {t}");
        counts[t as usize] += 1;
    }
    let expected = n as f64 / 1000.0;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
    // 999 degrees of freedom: mean 999, standard deviation √1998 ≈ 44.7; 6 standard deviations.
    assert!(chi2 < 999.0 + 6.0 * 1998f64.sqrt(), "chi-square {chi2:.0}: t is not uniform");
    for end in [0, 999] {
        let c = counts[end] as f64;
        assert!((c - expected).abs() < 6.0 * expected.sqrt(), "t = {end} drawn {c} times, expected {expected}");
    }
    // The noised inputs are q_sample of the drawn t and noise (x0 = 0: x_t = √(1 − ᾱ_t) ε).
    let (xt, noise) = (batch.x_t.to_vec().unwrap(), batch.noise.to_vec().unwrap());
    for i in (0..n).step_by(997) {
        let ac = d.schedule.alphas_cumprod[batch.t[i] as usize];
        assert!((xt[i] as f64 - (1.0 - ac).sqrt() * noise[i] as f64).abs() <= 1e-6);
    }
}
