//! Generating images from a trained U-Net: batches of Algorithm 2 (or DDIM) chains under no-grad, on any device.

use crate::diffusion::{Diffusion, EpsModel, Sampler, Step};
use crate::nn::unet::UNet;
use crate::nn::{Ctx, ParamStore};
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
    let cx = Ctx::no_grad(params).with_dtype(dtype);
    let mut model = |x: &Tensor, t: &[f32]| Ok(unet.forward(&cx, &Var::constant(x.clone()), t)?.into_value());
    let image = [cfg.in_channels, cfg.image_size, cfg.image_size];
    generate_with(&mut model, image, diffusion, opts, observe)
}

/// `generate` for any ε-model (a U-Net, the empirical optimal denoiser) of images `[C, H, W]`.
pub fn generate_with(
    model: &mut EpsModel,
    image: [usize; 3],
    diffusion: &Diffusion,
    opts: &SampleOptions,
    observe: &mut dyn FnMut(usize, &Step),
) -> Result<Tensor> {
    let &SampleOptions { n, batch_size, sampler, seed, ref device } = opts;
    if n == 0 || batch_size == 0 {
        return Err(Error::msg("sample: --num and --batch-size must be positive"));
    }
    let [c, h, w] = image;
    let batches = n.div_ceil(batch_size);
    let mut out = Vec::with_capacity(n * c * h * w);
    for b in 0..batches {
        let size = batch_size.min(n - b * batch_size);
        let shape = [size, c, h, w];
        let mut rng = Philox::new(seed.wrapping_add(b as u64));
        let mut on_step = |s: &Step| observe(b, s);
        let x = diffusion.sample(model, &shape, sampler, &mut rng, device, &mut on_step)?;
        out.extend(x.to_vec()?);
    }
    Tensor::from_vec(out, &[n, c, h, w])
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
