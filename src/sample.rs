//! Generating images from a trained U-Net: batches of Algorithm 2 (or DDIM) chains under no-grad, on any device.

use crate::backend::graph::GraphMode;
use crate::diffusion::graphed::CondModel;
use crate::diffusion::{Diffusion, EpsModel, Sampler, Step};
use crate::nn::unet::UNet;
use crate::nn::{Ctx, ParamStore};
use crate::ops::embedding::timestep_embedding;
use crate::rng::Philox;
use crate::{DType, Device, Error, Result, Tensor, Var};

/// How many images to generate and how: the options every sampling driver shares.
#[derive(Clone)]
pub struct SampleOptions {
    /// Number of images.
    pub n: usize,
    /// Images per sampling batch.
    pub batch_size: usize,
    pub sampler: Sampler,
    /// Batch b draws its noise from Philox(seed + b).
    pub seed: u64,
    pub device: Device,
    /// CUDA graphs for the U-Net sampler on a CUDA device (ignored elsewhere).
    pub graphs: GraphMode,
}

/// `opts.n` images [n, C, H, W] in [−1, 1], generated `opts.batch_size` at a time. Batch b draws its noise from
/// Philox(seed + b), so a sample does not depend on how many others are generated after it.
/// `observe(batch, step)` is called after every reverse step of every batch.
pub fn generate(
    unet: &UNet,
    params: &ParamStore,
    diffusion: &Diffusion,
    opts: &SampleOptions,
    observe: &mut dyn FnMut(usize, &Step),
) -> Result<Tensor> {
    generate_as(unet, params, diffusion, opts, DType::F32, observe)
}

/// `generate` with the U-Net computing in `dtype` (bf16: mixed precision; x_t and the reverse step stay f32
/// between steps, only the model runs in bf16).
pub fn generate_as(
    unet: &UNet,
    params: &ParamStore,
    diffusion: &Diffusion,
    opts: &SampleOptions,
    dtype: DType,
    observe: &mut dyn FnMut(usize, &Step),
) -> Result<Tensor> {
    let cfg = &unet.config;
    let [c, h, w] = [cfg.in_channels, cfg.image_size, cfg.image_size];
    let mut out = Vec::with_capacity(opts.n * c * h * w);
    let mut sink = Batches::all(|_, x: Tensor| {
        out.extend(x.to_vec()?);
        Ok(())
    });
    generate_unet_batches(unet, params, diffusion, opts, dtype, observe, &mut sink)?;
    drop(sink);
    Tensor::from_vec(out, &[opts.n, c, h, w])
}

/// `generate` for any ε-model (a U-Net, the empirical optimal denoiser) of images `[C, H, W]`.
pub fn generate_with(
    model: &mut EpsModel,
    image: [usize; 3],
    diffusion: &Diffusion,
    opts: &SampleOptions,
    observe: &mut dyn FnMut(usize, &Step),
) -> Result<Tensor> {
    let [c, h, w] = image;
    let mut out = Vec::with_capacity(opts.n * c * h * w);
    let mut sink = Batches::all(|_, x: Tensor| {
        out.extend(x.to_vec()?);
        Ok(())
    });
    generate_batches(model, image, diffusion, opts, observe, &mut sink)?;
    drop(sink);
    Tensor::from_vec(out, &[opts.n, c, h, w])
}

/// Where `generate_batches` hands the batches it makes, and which it makes.
pub struct Batches<'a> {
    /// Batches that are not generated (already done by an interrupted run).
    pub skip: &'a dyn Fn(usize) -> bool,
    /// Asked before each batch: stop here (Ctrl-C, a test's interruption), leaving the later batches undone.
    pub stop: &'a dyn Fn() -> bool,
    /// Each finished batch b, images [size, C, H, W] in [−1, 1].
    pub put: Box<dyn FnMut(usize, Tensor) -> Result<()> + 'a>,
}

impl<'a> Batches<'a> {
    /// Every batch, never stopping, each handed to `put`.
    pub fn all(put: impl FnMut(usize, Tensor) -> Result<()> + 'a) -> Batches<'a> {
        Batches { skip: &|_| false, stop: &|| false, put: Box::new(put) }
    }
}

/// The batches of `opts` one at a time (`opts.batch_size` images each, the last one short), except those `sink`
/// skips. Batch b draws its noise from Philox(seed + b), so a batch does not depend on which others are made:
/// the batches of an interrupted run and its resumption are the batches of one uninterrupted run. Returns whether
/// it got to the end (false: `sink.stop` stopped it).
pub fn generate_batches(
    model: &mut EpsModel,
    image: [usize; 3],
    diffusion: &Diffusion,
    opts: &SampleOptions,
    observe: &mut dyn FnMut(usize, &Step),
    sink: &mut Batches,
) -> Result<bool> {
    let mut chain = |shape: &[usize], rng: &mut Philox, on_step: &mut dyn FnMut(&Step)| {
        diffusion.sample(model, shape, opts.sampler, rng, &opts.device, on_step)
    };
    batch_loop(image, opts, observe, sink, &mut chain)
}

/// One chain: (shape, its Philox stream, the step observer) → x_0.
type Chain<'a> = dyn FnMut(&[usize], &mut Philox, &mut dyn FnMut(&Step)) -> Result<Tensor> + 'a;

fn batch_loop(
    image: [usize; 3],
    opts: &SampleOptions,
    observe: &mut dyn FnMut(usize, &Step),
    sink: &mut Batches,
    chain: &mut Chain,
) -> Result<bool> {
    let &SampleOptions { n, batch_size, seed, .. } = opts;
    if n == 0 || batch_size == 0 {
        return Err(Error::msg("sample: --num and --batch-size must be positive"));
    }
    let [c, h, w] = image;
    for b in 0..n.div_ceil(batch_size) {
        if (sink.skip)(b) {
            continue;
        }
        if (sink.stop)() {
            return Ok(false);
        }
        let size = batch_size.min(n - b * batch_size);
        let mut rng = Philox::new(seed.wrapping_add(b as u64));
        let mut on_step = |s: &Step| observe(b, s);
        let x = chain(&[size, c, h, w], &mut rng, &mut on_step)?;
        (sink.put)(b, x)?;
    }
    Ok(true)
}

/// `generate_batches` with the U-Net of `params` as the ε-model, computing in `dtype`. On a CUDA device with `opts.graphs` Auto or On,
/// each chain's step is captured once as a CUDA graph and replayed (`Diffusion::sample_graphed`: the same images,
/// bit for bit).
pub fn generate_unet_batches(
    unet: &UNet,
    params: &ParamStore,
    diffusion: &Diffusion,
    opts: &SampleOptions,
    dtype: DType,
    observe: &mut dyn FnMut(usize, &Step),
    sink: &mut Batches,
) -> Result<bool> {
    let cfg = &unet.config;
    let cx = Ctx::no_grad(params).with_dtype(dtype);
    let image = [cfg.in_channels, cfg.image_size, cfg.image_size];
    match (&opts.device, opts.graphs) {
        (Device::Cuda(be), GraphMode::Auto | GraphMode::On) => {
            let row = |t: usize| timestep_embedding(&[t as f32], cfg.ch)?.to_vec();
            let mut eval = |x: &Tensor, emb: &Tensor| {
                let (x, emb) = (Var::constant(x.clone()), Var::constant(emb.clone()));
                Ok(unet.forward_embedded(&cx, &x, &emb)?.into_value())
            };
            let mut chain = |shape: &[usize], rng: &mut Philox, on_step: &mut dyn FnMut(&Step)| {
                let mut model = CondModel { dim: cfg.ch, row: &row, eval: &mut eval };
                diffusion.sample_graphed(&mut model, shape, opts.sampler, rng, be, opts.graphs, on_step)
            };
            batch_loop(image, opts, observe, sink, &mut chain)
        }
        _ => {
            let mut model = |x: &Tensor, t: &[f32]| Ok(unet.forward(&cx, &Var::constant(x.clone()), t)?.into_value());
            generate_batches(&mut model, image, diffusion, opts, observe, sink)
        }
    }
}

/// ε̂ = model(x_t, t) for one batch under no-grad: x_t [N, C, H, W] on the parameters' device, one integer
/// timestep per sample (0-based, as diffusers' timesteps).
pub fn eps(unet: &UNet, params: &ParamStore, x_t: &Tensor, t: &[i64]) -> Result<Tensor> {
    eps_as(unet, params, x_t, t, DType::F32)
}

/// `eps` with the U-Net computing in `dtype` (the result is f32 either way).
pub fn eps_as(unet: &UNet, params: &ParamStore, x_t: &Tensor, t: &[i64], dtype: DType) -> Result<Tensor> {
    if let Some(&bad) = t.iter().find(|&&t| t < 0) {
        return Err(Error::msg(format!("eps: timestep {bad} is negative")));
    }
    let t: Vec<f32> = t.iter().map(|&t| t as f32).collect();
    let cx = Ctx::no_grad(params).with_dtype(dtype);
    Ok(unet.forward(&cx, &Var::constant(x_t.clone()), &t)?.into_value())
}
