//! Whole-model selftest cases: U-Net forward + backward (a small one and the cifar10 preset), the fused
//! optimizer step, two full training steps, and sampling (plain and as a replayed CUDA graph).

use super::{case, input, Case, Shapes};
use crate::backend::graph::GraphMode;
use crate::config::Config;
use crate::config::Precision;
use crate::diffusion::{Diffusion, Sampler};
use crate::nn::unet::{UNet, UNetConfig};
use crate::nn::{Ctx, ParamStore};
use crate::ops::elementwise::add_scalar_tensor;
use crate::ops::loss::mse;
use crate::optim::{clip_grad_norm, Adam, AdamConfig, Ema, TrainStep};
use crate::rng::Philox;
use crate::sample::{self, SampleOptions};
use crate::train::Trainer;
use crate::{DType, Device, Error, Result, Tape, Tensor, Var};

pub(super) fn small_unet() -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 3,
        ch: 32,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![8],
        dropout: 0.1,
        norm_groups: 8,
        norm_eps: 1e-6,
        downsample_padding: 0,
    }
}

/// The model with every parameter replaced by deterministic values of a trained-like scale (the official init
/// zeroes the residual branches' last layers, which would leave most gradients at ~1e-10), on `device`.
pub(super) fn model(cfg: &UNetConfig, device: &Device) -> Result<(UNet, ParamStore)> {
    let mut store = ParamStore::new();
    let unet = UNet::new(cfg, &mut store, &mut Philox::new(0))?;
    let mut tensors = Vec::new();
    for (i, (name, t)) in store.names().iter().zip(store.tensors()).enumerate() {
        let shape = t.shape().to_vec();
        let u = input(&shape, 100 + i as u32, &Device::Cpu)?;
        let v = if shape.len() >= 2 {
            u.scale((1.0 / (t.numel() / shape[0]) as f64).sqrt() as f32)?
        } else if name.contains("norm") && name.ends_with("weight") {
            add_scalar_tensor(&u.scale(0.1)?, 1.0)?
        } else {
            u.scale(0.1)?
        };
        tensors.push(v.to_device(device)?);
    }
    store.set_tensors(tensors)?;
    Ok((unet, store))
}

/// [loss, ε̂, every parameter gradient in store order] for one batch, in training mode (dropout on).
pub(super) fn forward_backward(cfg: &UNetConfig, batch: usize, device: &Device) -> Result<Vec<Tensor>> {
    forward_backward_as(cfg, batch, device, DType::F32)
}

/// `forward_backward` with the activations in `dtype` on a device (the CPU reference always computes in f32).
pub(super) fn forward_backward_as(
    cfg: &UNetConfig,
    batch: usize,
    device: &Device,
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let dtype = if device.is_cpu() { DType::F32 } else { dtype };
    let (unet, store) = model(cfg, device)?;
    let shape = [batch, cfg.in_channels, cfg.image_size, cfg.image_size];
    let x = input(&shape, 1, device)?;
    let target = input(&shape, 2, device)?;
    let t: Vec<f32> = (0..batch).map(|i| (10 + 487 * i % 1000) as f32).collect();
    let tape = Tape::new();
    let cx = Ctx::with_grad(&tape, &store, true, Philox::new(5)).with_dtype(dtype);
    let eps = unet.forward(&cx, &Var::constant(x), &t)?;
    let loss = mse(&eps, &Var::constant(target))?;
    let mut grads = tape.backward(&loss)?;
    let mut out = vec![loss.value().clone(), eps.value().clone()];
    for v in cx.param_vars() {
        out.push(grads.take(v).map_or_else(|| Tensor::zeros(v.shape(), device), Ok)?);
    }
    Ok(out)
}

/// Clipping (norm above the limit, so the scale applies), then two Adam steps (`config`) on fixed gradients, with
/// the EMA fused in or without one: [clipped grads, params, m, v, (EMA shadow,) the norm].
fn optimizer_step(device: &Device, config: AdamConfig, with_ema: bool) -> Result<Vec<Tensor>> {
    let shapes: [&[usize]; 4] = [&[256, 512, 3, 3], &[256], &[512, 128], &[3, 6, 5, 7]];
    let on = |s: &[usize], seed: u32| input(s, seed, device);
    let mut params = shapes.iter().enumerate().map(|(i, s)| on(s, 10 + i as u32)).collect::<Result<Vec<_>>>()?;
    let mut grads = shapes.iter().enumerate().map(|(i, s)| on(s, 20 + i as u32)).collect::<Result<Vec<_>>>()?;
    let norm = clip_grad_norm(&mut grads, 1.0)?;
    let mut adam = Adam::new(config, &params)?;
    let mut ema = Ema::new(&params, 0.9)?;
    for lr in [1e-3, 2e-4] {
        if with_ema {
            adam.step_with_ema(&mut params, &grads, lr, Some(&mut ema))?;
        } else {
            adam.step(&mut params, &grads, lr)?;
        }
    }
    let (m, v, _) = adam.state();
    let mut out = grads.clone();
    out.extend(params);
    out.extend(m.iter().cloned());
    out.extend(v.iter().cloned());
    if with_ema {
        out.extend(ema.shadow().iter().cloned());
    }
    // Host values (read back by the step) go to the device like every other output: the selftest checks
    // that each output lives there.
    out.push(Tensor::scalar(norm).to_device(device)?);
    Ok(out)
}

/// Four `TrainStep`s (clip · AdamW with warm-up · EMA: on CUDA the three multi-tensor launches) on fresh
/// gradients each step, clipping active at steps 1 and 3 (norm ≫ 1) and not at 2 and 4 (gradients scaled by 1e-3),
/// the rate 0, half and full (warm-up of 2 steps), tensors of uneven sizes (partial chunks, a one-element one);
/// with `nan_at`, the test hook's NaN loss at that step, after which nothing may change. Returns [params, m, v, EMA
/// shadow, then per step: loss, norm, lr as reported, or the bad step and whether its value is NaN].
fn train_step_sequence(device: &Device, nan_at: Option<u64>) -> Result<Vec<Tensor>> {
    let shapes: [&[usize]; 5] = [&[64, 32, 3, 3], &[130], &[300, 70], &[3, 6, 5, 7], &[1]];
    let on = |s: &[usize], seed: u32| input(s, seed, device);
    let mut params = shapes.iter().enumerate().map(|(i, s)| on(s, 10 + i as u32)).collect::<Result<Vec<_>>>()?;
    let config = AdamConfig { lr: 1e-3, weight_decay: 0.01, decoupled: true, ..AdamConfig::default() };
    let mut adam = Adam::new(config, &params)?;
    let mut ema = Ema::new(&params, 0.9)?;
    let mut step = TrainStep::new(1.0, 2)?;
    step.inject_nan_at(nan_at);
    let mut reported = Vec::new();
    for k in 0..4u32 {
        let scale = if k % 2 == 0 { 1.0 } else { 1e-3 };
        let mut grads = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| on(s, 20 + 7 * k + i as u32)?.scale(scale))
            .collect::<Result<Vec<_>>>()?;
        let loss = Tensor::scalar(0.25 + k as f32).to_device(device)?;
        step.step(&mut adam, &mut ema, &mut params, &mut grads, &loss)?;
        let r = step.report()?;
        // After a non-finite step only the verdict is defined (the rest is what each device last saw).
        let values = match r.non_finite {
            Some(bad) => vec![bad.step as f32, f32::from(u8::from(bad.value.is_nan()))],
            None => vec![r.loss, r.grad_norm, r.lr],
        };
        for v in values {
            reported.push(Tensor::scalar(v).to_device(device)?);
        }
    }
    let (m, v, _) = adam.state();
    let mut out = params;
    out.extend(m.iter().cloned());
    out.extend(v.iter().cloned());
    out.extend(ema.shadow().iter().cloned());
    out.extend(reported);
    Ok(out)
}

/// Two full `Trainer` steps of the small model: [loss, grad norm] of each. (Parameters are not compared: Adam's
/// first steps move each weight by about ±lr whatever its gradient's size, so a near-zero gradient whose sign
/// differs by rounding flips a weight; the second step's loss is what that must not disturb.)
fn train_steps(device: &Device) -> Result<Vec<Tensor>> {
    train_steps_as(device, Precision::F32)
}

/// `train_steps` with the device computing in `precision` (the CPU reference in f32).
fn train_steps_as(device: &Device, precision: Precision) -> Result<Vec<Tensor>> {
    let mut config = Config::preset("tiny")?;
    config.train.precision = if device.is_cpu() { Precision::F32 } else { precision };
    config.model = small_unet();
    config.train.batch_size = 2;
    config.train.warmup_steps = 0;
    let mut trainer = Trainer::new(config, 3, device.clone())?;
    let x0 = input(&[2, 3, 16, 16], 9, device)?;
    let mut out = Vec::new();
    for _ in 0..2 {
        let s = trainer.step(&x0)?;
        out.push(Tensor::scalar(s.loss).to_device(device)?);
        out.push(Tensor::scalar(s.grad_norm).to_device(device)?);
    }
    Ok(out)
}

/// The cifar10 preset's U-Net layout (4 levels, 2 ResBlocks each, attention at 16×16, every skip concat) at 32
/// channels instead of 128: every layer family of the paper's model at 1/16 of its FLOPs. GroupNorm keeps the
/// paper's channels per group (4 at the first level, 8 below) with 8 groups: 32 groups of one channel would make
/// every conv bias and time-embedding projection before a norm exactly gradient-free (a per-channel constant is
/// normalised away), which the simulator's first run showed as rounding noise compared against noise.
fn cifar10_layout_ch32() -> Result<UNetConfig> {
    let mut cfg = Config::preset("cifar10")?.model;
    cfg.ch = 32;
    cfg.norm_groups = 8;
    Ok(cfg)
}

/// Three `Trainer` steps of the small model (warm-up over 2 steps, so the rate is 0, ½ and 1): on a CUDA device with
/// `--cuda-graphs on` the first runs plainly, the second is captured and launched, the third is a replay. There the
/// run goes twice, with graphs off and on, which must agree bit for bit in every loss, norm and rate reported and in
/// the final weights, EMA, Adam moments and RNG offsets (an error otherwise), and the graphed run must have launched
/// its two graphs; the plain run's [loss, norm, rate] per step are then judged against the CPU's.
fn train_steps_graphed(device: &Device, precision: Precision) -> Result<Vec<Tensor>> {
    let run = |graphs: GraphMode| -> Result<(Vec<f32>, Vec<Vec<u32>>, u64)> {
        let mut config = Config::preset("tiny")?;
        config.train.precision = if device.is_cpu() { Precision::F32 } else { precision };
        config.model = small_unet();
        config.train.batch_size = 2;
        config.train.warmup_steps = 2;
        let mut trainer = Trainer::new(config, 3, device.clone())?;
        trainer.graphs = graphs;
        let x0 = input(&[2, 3, 16, 16], 9, device)?;
        let mut stats = Vec::new();
        for _ in 0..3 {
            let s = trainer.step(&x0)?;
            stats.extend([s.loss, s.grad_norm, s.lr]);
        }
        let ck = trainer.checkpoint()?;
        let mut bits = [ck.model, ck.ema, ck.adam_m, ck.adam_v]
            .iter()
            .flatten()
            .map(|t| Ok(t.to_vec()?.iter().map(|x| x.to_bits()).collect()))
            .collect::<Result<Vec<Vec<u32>>>>()?;
        let offsets = [ck.noise_rng.offset(), ck.dropout_rng.offset(), ck.step];
        bits.push(offsets.iter().map(|&o| o as u32).collect());
        Ok((stats, bits, trainer.graph_launches()))
    };
    let (stats, bits, _) = run(GraphMode::Off)?;
    if !device.is_cpu() {
        let (graphed, graphed_bits, launches) = run(GraphMode::On)?;
        if launches != 2 {
            return Err(Error::msg(format!("--cuda-graphs on launched {launches} graphs in 3 steps, expected 2")));
        }
        if let Some(i) = (0..stats.len()).find(|&i| stats[i].to_bits() != graphed[i].to_bits()) {
            return Err(Error::msg(format!(
                "step {}: the CUDA-graph step reports {} where plain launches report {} (loss, norm, rate)",
                i / 3 + 1,
                graphed[i],
                stats[i]
            )));
        }
        if let Some(i) = (0..bits.len()).find(|&i| bits[i] != graphed_bits[i]) {
            return Err(Error::msg(format!(
                "after 3 steps the CUDA-graph run's checkpoint tensor {i} (weights, EMA, m, v, then RNG offsets) \
                 differs from the plain run's"
            )));
        }
    }
    stats.into_iter().map(|v| Tensor::scalar(v).to_device(device)).collect()
}

/// Whole-model bf16 tolerances, measured on the simulator (docs/CUDA.md, "Mixed precision"). The U-Net case is
/// norm-wise per tensor: measured worst 0.28 (down_blocks.0.resnets.0.norm1.weight, the gradient furthest down the
/// backward chain and a Σ dz·x̂ cancellation; 0.31 through the GEMM kernel), median 0.054, ε̂ 0.020, loss 7.6e-4;
/// a gradient lost or computed as zero scores 1.0, one of the wrong sign 2.0. The two training steps' loss and gradient norm: measured 1.2e-4.
const BF16_UNET_TOL: f32 = 0.5;
const BF16_TRAIN_TOL: f32 = 5e-3;

/// Sampling the small model, batch 2: DDIM with 3 steps of the 1000-step schedule and η = 1 (noise at every step
/// but the last), and Algorithm 2 over a 4-step schedule (noise at every step). On a CUDA device the chains run
/// twice, with plain launches and with the step replayed as a CUDA graph, which must agree bit for bit (an error
/// here otherwise); the plain chains are then judged against the CPU's.
fn sample_chains(device: &Device) -> Result<Vec<Tensor>> {
    let cfg = small_unet();
    let (unet, store) = model(&cfg, device)?;
    let mut dcfg = Config::preset("tiny")?.diffusion;
    let long = Diffusion::new(&dcfg)?;
    dcfg.steps = 4;
    let short = Diffusion::new(&dcfg)?;
    let chains = [(&long, Sampler::Ddim { steps: 3, eta: 1.0 }), (&short, Sampler::Ddpm)];
    let mut out = Vec::new();
    for (diffusion, sampler) in chains {
        let run = |graphs| {
            let opts = SampleOptions { n: 2, batch_size: 2, sampler, seed: 7, device: device.clone(), graphs };
            sample::generate(&unet, &store, diffusion, &opts, &mut |_, _| {})
        };
        let plain = run(GraphMode::Off)?;
        if !device.is_cpu() {
            let graphed = run(GraphMode::On)?;
            let (a, b) = (plain.to_vec()?, graphed.to_vec()?);
            if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
                return Err(Error::msg(format!(
                    "{sampler:?}: the CUDA-graph sampler gives {} at element {i}, plain launches {}",
                    b[i], a[i]
                )));
            }
        }
        // `generate` hands its images back on the host; the selftest wants outputs where they were made.
        out.push(plain.to_device(device)?);
    }
    Ok(out)
}

pub(super) fn cases(shapes: Shapes) -> Vec<Case> {
    let bf16_cifar10 = match shapes {
        Shapes::Full => case(
            "unet fwd+bwd bf16 (cifar10)",
            "[2, 3, 32, 32] 35.7M params",
            BF16_UNET_TOL,
            Box::new(|d| forward_backward_as(&Config::preset("cifar10")?.model, 2, d, DType::Bf16)),
        ),
        Shapes::Reduced => case(
            "unet fwd+bwd bf16 (cifar10 layout)",
            "[1, 3, 32, 32] ch32 g8",
            BF16_UNET_TOL,
            Box::new(|d| forward_backward_as(&cifar10_layout_ch32()?, 1, d, DType::Bf16)),
        ),
    };
    let cifar10 = match shapes {
        Shapes::Full => case(
            "unet fwd+bwd (cifar10)",
            "[2, 3, 32, 32] 35.7M params",
            2e-3,
            Box::new(|d| forward_backward(&Config::preset("cifar10")?.model, 2, d)),
        ),
        Shapes::Reduced => case(
            "unet fwd+bwd (cifar10 layout)",
            "[1, 3, 32, 32] ch32 g8",
            2e-3,
            Box::new(|d| forward_backward(&cifar10_layout_ch32()?, 1, d)),
        ),
    };
    vec![
        case(
            "optimizer clip+adamw+ema",
            "4 tensors, 2 steps, wd 0.01",
            1e-4,
            Box::new(|d| {
                optimizer_step(d, AdamConfig { weight_decay: 0.01, decoupled: true, ..AdamConfig::default() }, true)
            }),
        ),
        case(
            "optimizer clip+adamw",
            "4 tensors, 2 steps, wd 0.1",
            1e-4,
            Box::new(|d| {
                optimizer_step(d, AdamConfig { weight_decay: 0.1, decoupled: true, ..AdamConfig::default() }, false)
            }),
        ),
        case(
            "optimizer clip+adam (L2)",
            "4 tensors, 2 steps, wd 0.01",
            1e-4,
            Box::new(|d| optimizer_step(d, AdamConfig { weight_decay: 0.01, ..AdamConfig::default() }, false)),
        ),
        case(
            "optimizer clip+adam",
            "4 tensors, 2 steps",
            1e-4,
            Box::new(|d| optimizer_step(d, AdamConfig::default(), false)),
        ),
        // Tolerance 0: the multi-tensor step must give the CPU's bits.
        case(
            "train step clip+adamw+ema (multi-tensor)",
            "5 tensors, 4 steps, warm-up 2, exact",
            0.0,
            Box::new(|d| train_step_sequence(d, None)),
        ),
        case(
            "train step NaN loss skips (multi-tensor)",
            "NaN at step 3 of 4, exact",
            0.0,
            Box::new(|d| train_step_sequence(d, Some(3))),
        ),
        case(
            "unet fwd+bwd (small)",
            "[2, 3, 16, 16] ch32 attn@8",
            1e-3,
            Box::new(|d| forward_backward(&small_unet(), 2, d)),
        )
        .grads_from(2),
        cifar10.grads_from(2),
        case("train 2 steps (small)", "[2, 3, 16, 16] loss, norm", 1e-3, Box::new(train_steps)),
        // Mixed precision against the f32 CPU reference (not on rounded inputs: every activation is rounded on
        // the way): the tolerance is measured and justified in docs/CUDA.md, "Mixed precision".
        bf16_cifar10.grads_from(2).norm_wise(),
        case(
            "train 2 steps bf16 (small)",
            "[2, 3, 16, 16] loss, norm",
            BF16_TRAIN_TOL,
            Box::new(|d| train_steps_as(d, Precision::Bf16)),
        ),
        case(
            "train 3 steps (small, CUDA graph = plain)",
            "[2, 3, 16, 16] loss, norm, lr",
            1e-3,
            Box::new(|d| train_steps_graphed(d, Precision::F32)),
        ),
        case(
            "train 3 steps bf16 (small, CUDA graph = plain)",
            "[2, 3, 16, 16] loss, norm, lr",
            BF16_TRAIN_TOL,
            Box::new(|d| train_steps_graphed(d, Precision::Bf16)),
        ),
        case("sample (small, CUDA graph = plain)", "[2, 3, 16, 16] ddim 3, ddpm T=4", 1e-3, Box::new(sample_chains)),
    ]
}
