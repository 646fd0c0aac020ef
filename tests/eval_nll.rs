//! The bits/dim bound: equal to a direct f64 computation for a fixed ε-model, and falling as a tiny U-Net trains.

use ddpm_cuda::config::{Config, DiffusionConfig};
use ddpm_cuda::diffusion::{BetaSchedule, Diffusion, Variance};
use ddpm_cuda::eval::nll::bits_per_dim;
use ddpm_cuda::nn::Ctx;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::train::Trainer;
use ddpm_cuda::{Device, Tensor, Var};

/// Pixels on the u8 grid, including the edge values −1 and 1 (the decoder's open-ended bins).
fn images(n: usize, side: usize) -> Tensor {
    let v: Vec<f32> = (0..n * side * side)
        .map(|i| match i % 11 {
            0 => -1.0,
            5 => 1.0,
            _ => ((i * 53 + (i / (side * side)) * 17) % 256) as f32 / 127.5 - 1.0,
        })
        .collect();
    Tensor::from_vec(v, &[n, 1, side, side]).unwrap()
}

/// Standard normal CDF approximation of the official code, written out on its own.
fn cdf(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 + 0.5 * (k * x * (1.0 + 0.044715 * x * x)).tanh()
}

#[test]
#[allow(clippy::needless_range_loop)] // the direct computation indexes on purpose
fn bound_equals_a_direct_f64_computation() {
    for variance in [Variance::FixedLarge, Variance::FixedSmall] {
        let steps = 20;
        let cfg = DiffusionConfig {
            steps,
            beta_schedule: BetaSchedule::Linear { start: 1e-3, end: 0.2 },
            variance,
            clip_x0: true,
        };
        let d = Diffusion::new(&cfg).unwrap();
        let x0 = images(2, 3);
        // A fixed, imperfect ε-model whose x̂0 sometimes leaves [−1, 1] (so clipping matters).
        let mut model = |x: &Tensor, t: &[f32]| {
            x.scale(0.7).and_then(|y| ddpm_cuda::ops::elementwise::add_scalar_tensor(&y, 0.02 * t[0] - 0.1))
        };
        let got = bits_per_dim(&mut model, &d, &x0, &mut Philox::new(5)).unwrap();

        // Direct: schedule from the betas, variances (not log variances), Gaussian KL in its textbook form.
        let betas: Vec<f64> = (0..steps).map(|i| 1e-3 + (0.2 - 1e-3) * i as f64 / (steps - 1) as f64).collect();
        let mut abar = vec![0.0; steps];
        let mut acc = 1.0;
        for t in 0..steps {
            acc *= 1.0 - betas[t];
            abar[t] = acc;
        }
        let abar_prev = |t: usize| if t == 0 { 1.0 } else { abar[t - 1] };
        let post_var = |t: usize| betas[t] * (1.0 - abar_prev(t)) / (1.0 - abar[t]);
        let x = x0.to_vec().unwrap();
        let dim = 9;
        let mut rng = Philox::new(5);
        let mut total = [0.0f64; 2];
        for t in (0..steps).rev() {
            let noise = rng.normal(18);
            let model_var = match variance {
                Variance::FixedLarge => {
                    if t == 0 {
                        post_var(1)
                    } else {
                        betas[t]
                    }
                }
                Variance::FixedSmall => {
                    if t == 0 {
                        post_var(1)
                    } else {
                        post_var(t)
                    }
                }
            };
            for i in 0..2 {
                let mut nats = 0.0;
                for k in i * dim..(i + 1) * dim {
                    let xt = (abar[t].sqrt() * x[k] as f64 + (1.0 - abar[t]).sqrt() * noise[k] as f64) as f32 as f64;
                    let eps = (xt as f32 * 0.7 + (0.02 * t as f32 - 0.1)) as f64;
                    let x0_hat = ((xt - (1.0 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1.0, 1.0);
                    let mean_of = |x0: f64| {
                        (abar_prev(t).sqrt() * betas[t] * x0 + (1.0 - betas[t]).sqrt() * (1.0 - abar_prev(t)) * xt)
                            / (1.0 - abar[t])
                    };
                    let mu = mean_of(x0_hat);
                    nats += if t == 0 {
                        let s = model_var.sqrt();
                        let (hi, lo) =
                            (cdf((x[k] as f64 - mu + 1.0 / 255.0) / s), cdf((x[k] as f64 - mu - 1.0 / 255.0) / s));
                        let p = if x[k] <= -0.999 {
                            hi
                        } else if x[k] >= 0.999 {
                            1.0 - lo
                        } else {
                            hi - lo
                        };
                        -p.max(1e-12).ln()
                    } else {
                        let (v1, v2) = (post_var(t), model_var);
                        0.5 * ((v2 / v1).ln() + (v1 + (mean_of(x[k] as f64) - mu).powi(2)) / v2 - 1.0)
                    };
                }
                total[i] += nats / dim as f64 / 2f64.ln();
            }
        }
        for i in 0..2 {
            let v = 1.0 - abar[steps - 1];
            let prior: f64 = (0..dim)
                .map(|k| 0.5 * (-(v.ln()) + v + abar[steps - 1] * (x[i * dim + k] as f64).powi(2) - 1.0))
                .sum::<f64>()
                / dim as f64
                / 2f64.ln();
            assert!((got.prior[i] - prior).abs() < 1e-12 * prior.abs().max(1.0));
            total[i] += prior;
            let rel = (got.total[i] - total[i]).abs() / total[i].abs();
            assert!(rel < 1e-9, "{variance:?} image {i}: {} vs direct {}", got.total[i], total[i]);
        }
    }
}

#[test]
fn bits_per_dim_fall_as_a_tiny_unet_trains() {
    let mut cfg = Config::preset("tiny").unwrap();
    cfg.model.image_size = 8;
    cfg.model.ch = 16;
    cfg.model.norm_groups = 4;
    cfg.model.attn_resolutions = vec![];
    cfg.model.dropout = 0.0;
    cfg.diffusion.steps = 100;
    cfg.train.batch_size = 8;
    cfg.train.warmup_steps = 10;
    cfg.train.lr = 2e-3;
    let x0 = images(8, 8);
    let mut trainer = Trainer::new(cfg, 3, Device::Cpu).unwrap();
    let evaluate = |trainer: &Trainer| {
        let cx = Ctx::no_grad(&trainer.params);
        let mut model =
            |x: &Tensor, t: &[f32]| Ok(trainer.unet.forward(&cx, &Var::constant(x.clone()), t)?.into_value());
        let b = bits_per_dim(&mut model, &trainer.diffusion, &x0, &mut Philox::new(9)).unwrap();
        b.total.iter().sum::<f64>() / 8.0
    };
    let before = evaluate(&trainer);
    for _ in 0..150 {
        trainer.step(&x0).unwrap();
    }
    let after = evaluate(&trainer);
    eprintln!("bits/dim: {before:.3} at init, {after:.3} after 150 steps");
    assert!(before.is_finite() && after.is_finite());
    assert!(after < before - 1.0, "bits/dim {before} → {after}");
}
