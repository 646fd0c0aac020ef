//! Whole sampling chains against diffusers (tests/fixtures/parity/chain.safetensors, made by
//! scripts/parity/make_chain_fixtures.py with the versions in scripts/parity/requirements.txt): DDPMScheduler
//! (fixed_large / fixed_small × clip_sample on / off, all 40 steps of a T = 40 schedule) and DDIMScheduler (η = 0
//! and 1 × clip on / off, 25 steps of the paper's T = 1000 schedule), with an analytic ε-model both sides compute
//! the same way and diffusers' per-step noise fed to ours. Every intermediate x_t and x̂0 is compared.
//!
//! `Diffusion::sample` is tied to the same step-by-step composition (its timesteps, coefficients and noise draw
//! order, bit for bit), and `generate`'s per-batch seeding is checked: a sample does not depend on how many are
//! generated after it.

use std::collections::BTreeMap;
use std::path::Path;

use ddpm_cuda::config::DiffusionConfig;
use ddpm_cuda::diffusion::{BetaSchedule, Diffusion, Sampler, Variance};
use ddpm_cuda::ops::diffusion_step::{reverse_step, StepCoefs};
use ddpm_cuda::rng::Philox;
use ddpm_cuda::sample::{generate_with, SampleOptions};
use ddpm_cuda::{Device, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors};

type Fixture = BTreeMap<String, (Vec<f64>, Vec<usize>)>;

fn read_all(path: &Path) -> Fixture {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let b = v.data();
            let vals: Vec<f64> = match v.dtype() {
                Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            (name, (vals, v.shape().to_vec()))
        })
        .collect()
}

fn fixture() -> Fixture {
    read_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/chain.safetensors"))
}

const SHAPE: [usize; 4] = [2, 3, 4, 4];
const PER: usize = 2 * 3 * 4 * 4;

/// ε̂(x, t) = k_t · x + 0.1 · tanh(x), as the fixture script's model.
fn eps_model(x: &Tensor, k: f64) -> Result<Tensor> {
    let v: Vec<f32> = x.to_vec()?.iter().map(|&x| k as f32 * x + 0.1 * x.tanh()).collect();
    Tensor::from_vec(v, x.shape())
}

/// k_t = √(1 − ᾱ_t) / (ᾱ_t s² + 1 − ᾱ_t), s = 0.5, from our schedule.
fn k_of(d: &Diffusion, t: usize) -> f64 {
    let a = d.schedule.alphas_cumprod[t];
    (1.0 - a).sqrt() / (a * 0.25 + 1.0 - a)
}

/// The sampler's plan: (t, coefficients) per step, as `Diffusion::sample` builds it.
fn plan(d: &Diffusion, sampler: Sampler) -> Vec<(usize, StepCoefs)> {
    match sampler {
        Sampler::Ddpm => (0..d.schedule.steps()).rev().map(|t| (t, d.ddpm_coefs(t))).collect(),
        Sampler::Ddim { steps, eta } => {
            let ts = d.ddim_timesteps(steps).unwrap();
            ts.iter().enumerate().map(|(i, &t)| (t, d.ddim_coefs(t, ts.get(i + 1).copied(), eta))).collect()
        }
    }
}

fn diffusion(steps: usize, beta: BetaSchedule, variance: Variance, clip: bool) -> Diffusion {
    Diffusion::new(&DiffusionConfig { steps, beta_schedule: beta, variance, clip_x0: clip }).unwrap()
}

fn slice(f: &Fixture, key: &str, i: usize) -> Tensor {
    let v: Vec<f32> = f[key].0[i * PER..(i + 1) * PER].iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, &SHAPE).unwrap()
}

/// Run one fixture chain with our steps; returns the worst error over every step's x_{t−1} and x̂0.
fn check_chain(f: &Fixture, prefix: &str, d: &Diffusion, sampler: Sampler, tol: f64) -> f64 {
    let steps = plan(d, sampler);
    let ts: Vec<usize> = f[&format!("{prefix}.timesteps")].0.iter().map(|&t| t as usize).collect();
    assert_eq!(steps.iter().map(|s| s.0).collect::<Vec<_>>(), ts, "{prefix}: timesteps");
    let mut x = Tensor::from_vec(f[&format!("{prefix}.x_T")].0.iter().map(|&v| v as f32).collect(), &SHAPE).unwrap();
    let mut worst: f64 = 0.0;
    for (i, (t, coefs)) in steps.into_iter().enumerate() {
        // The model coefficient both sides use: the fixture's, and ours from our own schedule agrees with it.
        let k = f[&format!("{prefix}.k")].0[i];
        assert!((k_of(d, t) - k).abs() <= 1e-9 * k.abs().max(1.0), "{prefix}: k at t = {t}");
        let eps = eps_model(&x, k).unwrap();
        let z = slice(f, &format!("{prefix}.noise"), i);
        let x_prev = reverse_step(&x, &eps, (coefs.sigma != 0.0).then_some(&z), coefs).unwrap();
        let x0 =
            reverse_step(&x, &eps, None, StepCoefs { c_x0: 1.0, c_xt: 0.0, c_eps: 0.0, sigma: 0.0, ..coefs }).unwrap();
        for (what, got) in [("x", &x_prev), ("x0", &x0)] {
            let want = &f[&format!("{prefix}.{what}")].0[i * PER..(i + 1) * PER];
            let err = got
                .to_vec()
                .unwrap()
                .iter()
                .zip(want)
                .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(1.0))
                .fold(0.0, f64::max);
            assert!(err <= tol, "{prefix}: step {i} (t = {t}) {what}: error {err:.2e} > {tol:.0e}");
            worst = worst.max(err);
        }
        x = x_prev;
    }
    worst
}

#[test]
fn ddpm_chains_match_ddpmscheduler() {
    let f = fixture();
    let beta = BetaSchedule::Linear { start: 1e-3, end: 0.2 };
    for (variance, vname) in [(Variance::FixedLarge, "fixed_large"), (Variance::FixedSmall, "fixed_small")] {
        for clip in [true, false] {
            let prefix = format!("ddpm.{vname}.clip{}", clip as u8);
            let worst = check_chain(&f, &prefix, &diffusion(40, beta, variance, clip), Sampler::Ddpm, 2e-5);
            eprintln!("{prefix}: 40 steps, worst error {worst:.2e}");
        }
    }
}

#[test]
fn ddim_chains_match_ddimscheduler() {
    let f = fixture();
    for eta in [0.0, 1.0] {
        for clip in [true, false] {
            let prefix = format!("ddim.eta{}.clip{}", eta as u8, clip as u8);
            let d = diffusion(1000, BetaSchedule::PAPER, Variance::FixedLarge, clip);
            let worst = check_chain(&f, &prefix, &d, Sampler::Ddim { steps: 25, eta }, 2e-5);
            eprintln!("{prefix}: 25 steps, worst error {worst:.2e}");
        }
    }
}

/// `Diffusion::sample` is the composition checked above: the same timesteps and coefficients, x_T and then one
/// noise draw per step that adds noise, from its Philox stream, bit for bit.
#[test]
fn sample_is_the_checked_composition() {
    let beta = BetaSchedule::Linear { start: 1e-3, end: 0.2 };
    let cases = [
        (diffusion(40, beta, Variance::FixedLarge, true), Sampler::Ddpm),
        (diffusion(40, beta, Variance::FixedSmall, false), Sampler::Ddpm),
        (diffusion(1000, BetaSchedule::PAPER, Variance::FixedLarge, true), Sampler::Ddim { steps: 25, eta: 1.0 }),
        (diffusion(1000, BetaSchedule::PAPER, Variance::FixedLarge, false), Sampler::Ddim { steps: 25, eta: 0.0 }),
    ];
    for (d, sampler) in cases {
        let mut model = |x: &Tensor, t: &[f32]| eps_model(x, k_of(&d, t[0] as usize));
        let mut seen = Vec::new();
        let mut rng = Philox::new(77);
        let got = d
            .sample(&mut model, &SHAPE, sampler, &mut rng, &Device::Cpu, &mut |s| {
                seen.push((s.t, s.x_prev.to_vec().unwrap()))
            })
            .unwrap();
        let mut draw = Philox::new(77);
        let mut x = draw.normal_on(&SHAPE, &Device::Cpu).unwrap();
        let steps = plan(&d, sampler);
        assert_eq!(seen.len(), steps.len(), "{sampler:?}: step count");
        for ((t, coefs), (seen_t, seen_x)) in steps.into_iter().zip(&seen) {
            assert_eq!(t, *seen_t, "{sampler:?}: timestep");
            let eps = eps_model(&x, k_of(&d, t)).unwrap();
            let z = (coefs.sigma != 0.0).then(|| draw.normal_on(&SHAPE, &Device::Cpu).unwrap());
            x = reverse_step(&x, &eps, z.as_ref(), coefs).unwrap();
            assert_eq!(&x.to_vec().unwrap(), seen_x, "{sampler:?}: t = {t}");
        }
        assert_eq!(got.to_vec().unwrap(), x.to_vec().unwrap(), "{sampler:?}: final sample");
    }
}

/// `generate` seeds batch b with seed + b: the first m samples are the same whether m or more are generated
/// (with the same batch size), and different batches get different noise.
#[test]
fn a_sample_does_not_depend_on_how_many_come_after_it() {
    let d = diffusion(1000, BetaSchedule::PAPER, Variance::FixedLarge, true);
    let image = [1, 4, 4];
    let per = 16;
    let run = |n: usize| {
        let mut model = |x: &Tensor, t: &[f32]| eps_model(x, k_of(&d, t[0] as usize));
        let sampler = Sampler::Ddim { steps: 10, eta: 1.0 };
        let opts =
            SampleOptions { n, batch_size: 3, sampler, seed: 5, device: Device::Cpu, graphs: Default::default() };
        generate_with(&mut model, image, &d, &opts, &mut |_, _| {}).unwrap().to_vec().unwrap()
    };
    let all = run(8);
    for n in [1, 2, 3, 4, 7] {
        assert_eq!(run(n), all[..n * per], "the first {n} of 8 samples changed");
    }
    // Batches differ (so the check above is not comparing constants): batch 1 is not batch 0 again.
    assert_ne!(all[..3 * per], all[3 * per..6 * per]);
    // And a different seed gives different samples.
    let mut model = |x: &Tensor, t: &[f32]| eps_model(x, k_of(&d, t[0] as usize));
    let opts = SampleOptions {
        n: 8,
        batch_size: 3,
        sampler: Sampler::Ddim { steps: 10, eta: 1.0 },
        seed: 6,
        device: Device::Cpu,
        graphs: Default::default(),
    };
    let other = generate_with(&mut model, image, &d, &opts, &mut |_, _| {});
    assert_ne!(other.unwrap().to_vec().unwrap(), all);
}
