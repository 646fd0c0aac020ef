//! The empirical optimal denoiser (closed form against a direct computation; its samples land on training
//! images) and the nearest-neighbour search of the memorization report.

use ddpm_cuda::config::DiffusionConfig;
use ddpm_cuda::diffusion::{BetaSchedule, Diffusion, Sampler, Variance};
use ddpm_cuda::eval::empirical::{nearest_neighbours, optimal_eps, TrainingSet};
use ddpm_cuda::sample::{generate_with, SampleOptions};
use ddpm_cuda::{Device, Tensor};

fn paper_diffusion() -> Diffusion {
    let cfg = DiffusionConfig {
        steps: 1000,
        beta_schedule: BetaSchedule::PAPER,
        variance: Variance::FixedLarge,
        clip_x0: true,
    };
    Diffusion::new(&cfg).unwrap()
}

/// `n` images 1×6×6 of pixel values on the u8 grid, far apart from each other.
fn training_images(n: usize) -> Tensor {
    let v: Vec<f32> = (0..n * 36).map(|i| ((i * 97 + (i / 36) * 31) % 256) as f32 / 127.5 - 1.0).collect();
    Tensor::from_vec(v, &[n, 1, 6, 6]).unwrap()
}

#[test]
fn optimal_eps_matches_the_direct_posterior_mean() {
    let d = paper_diffusion();
    let s = &d.schedule;
    let x = training_images(3);
    let train = TrainingSet::from_tensor(&x).unwrap();
    let rows = x.to_vec().unwrap();
    // x_t near the second image, with timesteps where the weights are spread and where they are one-hot.
    let xt: Vec<f32> = (0..2 * 36).map(|i| 0.4 * rows[36 + i % 36] + 0.05 * ((i % 7) as f32 - 3.0)).collect();
    for t in [999usize, 500, 60, 3] {
        let xt_tensor = Tensor::from_vec(xt.clone(), &[2, 1, 6, 6]).unwrap();
        let eps = optimal_eps(&train, s, &xt_tensor, &[t as f32, t as f32]).unwrap().to_vec().unwrap();
        let a = s.alphas_cumprod[t];
        for b in 0..2 {
            let xb = &xt[b * 36..(b + 1) * 36];
            // Direct: Gaussian likelihoods N(x_t; √ā x_i, (1 − ā) I), normalised by their sum (with a shift so
            // the exponentials stay representable).
            let d2: Vec<f64> = (0..3)
                .map(|i| (0..36).map(|k| (xb[k] as f64 - a.sqrt() * rows[i * 36 + k] as f64).powi(2)).sum())
                .collect();
            let dmin = d2.iter().cloned().fold(f64::INFINITY, f64::min);
            let lik: Vec<f64> = d2.iter().map(|v| (-(v - dmin) / (2.0 * (1.0 - a))).exp()).collect();
            let z: f64 = lik.iter().sum();
            for k in 0..36 {
                let x0: f64 = (0..3).map(|i| lik[i] / z * rows[i * 36 + k] as f64).sum();
                let want = (xb[k] as f64 - a.sqrt() * x0) / (1.0 - a).sqrt();
                let got = eps[b * 36 + k] as f64;
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "t={t}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn empirical_denoiser_samples_sit_on_training_images() {
    let d = paper_diffusion();
    let x = training_images(5);
    let train = TrainingSet::from_tensor(&x).unwrap();
    let mut model = |xt: &Tensor, t: &[f32]| optimal_eps(&train, &d.schedule, xt, t);
    for sampler in [Sampler::Ddpm, Sampler::Ddim { steps: 50, eta: 0.0 }] {
        let opts =
            SampleOptions { n: 6, batch_size: 3, sampler, seed: 4, device: Device::Cpu, graphs: Default::default() };
        let out = generate_with(&mut model, [1, 6, 6], &d, &opts, &mut |_, _| {}).unwrap();
        let nn = nearest_neighbours(&train, &out.to_vec().unwrap()).unwrap();
        for (i, (j, dist)) in nn.iter().enumerate() {
            // Per-pixel RMS below 1e-3 of the [−1, 1] range: the sample is training image j.
            assert!(dist / 6.0 < 1e-3, "{sampler:?}: sample {i} is {dist} from its nearest training image {j}");
        }
    }
}

#[test]
fn nearest_neighbours_match_brute_force() {
    let train_t = training_images(40);
    let train = TrainingSet::from_tensor(&train_t).unwrap();
    let rows = train_t.to_vec().unwrap();
    // Noisy copies of a few training images, and one exact copy.
    let mut samples: Vec<f32> = Vec::new();
    for (s, src) in [7usize, 0, 39, 21].iter().enumerate() {
        samples
            .extend((0..36).map(|k| rows[src * 36 + k] + if s == 3 { 0.0 } else { 0.3 * ((k * s % 5) as f32 - 2.0) }));
    }
    let nn = nearest_neighbours(&train, &samples).unwrap();
    for (s, &(j, dist)) in nn.iter().enumerate() {
        let brute: Vec<f64> = (0..40)
            .map(|i| {
                (0..36).map(|k| (samples[s * 36 + k] as f64 - rows[i * 36 + k] as f64).powi(2)).sum::<f64>().sqrt()
            })
            .collect();
        let best = (0..40).min_by(|&a, &b| brute[a].total_cmp(&brute[b])).unwrap();
        assert_eq!(j, best, "sample {s}");
        assert!((dist - brute[best]).abs() < 1e-12);
    }
    assert_eq!(nn[3], (21, 0.0), "an exact copy is at distance 0");
}
