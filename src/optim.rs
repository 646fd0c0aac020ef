//! Optimizer pieces for DDPM training: Adam/AdamW (PyTorch semantics), global gradient-norm clipping, linear
//! learning-rate warm-up, and an exponential moving average of the weights. All work on lists of tensors
//! (one per parameter) so the trainer owns the parameters; state is plain tensors and integers for checkpoints.
//! CPU implementations here; the CUDA launches (kernels/adam.cu) are in `optim/cuda.rs`. `Adam::step_with_ema`
//! fuses the EMA into the Adam pass on CUDA (one read of each parameter per step).

use crate::{ensure_shape, Error, Result, Tensor};

pub(crate) mod cuda;

/// Adam hyper-parameters (defaults: PyTorch's, and DDPM's lr 2e-4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Base learning rate. `Adam::step` takes the effective rate per step so a schedule (`warmup_lr`) can drive it.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `true`: AdamW (decoupled decay `p ← p − lr·wd·p` before the Adam update, as `torch.optim.AdamW`);
    /// `false`: L2 decay added to the gradient (`g ← g + wd·p`, as `torch.optim.Adam`).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

/// Whether the tensors (all on one device, else `Error::DeviceMismatch` naming `op`) are on the CPU.
fn all_cpu<'a>(op: &'static str, tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<bool> {
    let tensors: Vec<&Tensor> = tensors.into_iter().collect();
    Ok(Tensor::same_device(op, &tensors)?.is_cpu())
}

/// Adam as `torch.optim.Adam` / `AdamW` (no amsgrad): with t the step count after increment,
/// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − lr · m̂ / (√v̂ + ε), m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)
/// (ε added after the square root of the bias-corrected v).
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl Adam {
    /// Zero moments shaped like `params`, on their devices.
    pub fn new(config: AdamConfig, params: &[Tensor]) -> Result<Adam> {
        let zeros = || params.iter().map(|p| Tensor::zeros(p.shape(), &p.device())).collect::<Result<Vec<_>>>();
        Ok(Adam { config, m: zeros()?, v: zeros()?, step: 0 })
    }

    /// Resume from checkpointed moments and step count.
    pub fn from_state(config: AdamConfig, m: Vec<Tensor>, v: Vec<Tensor>, step: u64) -> Result<Adam> {
        ensure_shape!(m.len() == v.len(), "Adam::from_state", "{} first moments, {} second moments", m.len(), v.len());
        for (i, (a, b)) in m.iter().zip(&v).enumerate() {
            ensure_shape!(a.shape() == b.shape(), "Adam::from_state", "moment {i}: {:?} vs {:?}", a.shape(), b.shape());
        }
        Ok(Adam { config, m, v, step })
    }

    /// (first moments, second moments, number of steps taken).
    pub fn state(&self) -> (&[Tensor], &[Tensor], u64) {
        (&self.m, &self.v, self.step)
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// One update of every parameter with learning rate `lr`. Shapes are checked before anything changes.
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor], lr: f32) -> Result<()> {
        self.step_with_ema(params, grads, lr, None)
    }

    /// `step`, then `ema.update(params)`: on CUDA both in one pass over each parameter.
    pub fn step_with_ema(
        &mut self,
        params: &mut [Tensor],
        grads: &[Tensor],
        lr: f32,
        ema: Option<&mut Ema>,
    ) -> Result<()> {
        ensure_shape!(
            params.len() == grads.len() && params.len() == self.m.len(),
            "Adam::step",
            "{} params, {} grads, {} moment tensors",
            params.len(),
            grads.len(),
            self.m.len()
        );
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            ensure_shape!(
                p.shape() == g.shape() && p.shape() == self.m[i].shape(),
                "Adam::step",
                "param {i}: {:?}, grad {:?}, moments {:?}",
                p.shape(),
                g.shape(),
                self.m[i].shape()
            );
        }
        let on_cpu = all_cpu("Adam::step", params.iter().chain(grads).chain(&self.m).chain(&self.v))?;
        if let Some(e) = &ema {
            e.check(params)?;
            all_cpu("Adam::step_with_ema", e.shadow.iter().chain(params.iter()))?;
        }
        self.step += 1;
        let c = self.config;
        // Bias corrections in f64 as PyTorch does (Python floats), then the update in f32 in PyTorch's order:
        // denom = √v / √(1−β₂ᵗ) + ε;  p −= (lr / (1−β₁ᵗ)) · m / denom.
        let t = self.step as i32;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t);
        let bc2_sqrt = (1.0 - (c.beta2 as f64).powi(t)).sqrt() as f32;
        let step_size = (lr as f64 / bc1) as f32;
        if !on_cpu {
            let mut s = cuda::AdamScalars {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                decoupled: c.decoupled,
                step_size,
                bc2_sqrt,
                ema_decay: 1.0,
            };
            let mut shadows = match ema {
                Some(e) => {
                    s.ema_decay = e.decay;
                    e.shadow.iter_mut().map(Some).collect()
                }
                None => (0..params.len()).map(|_| None).collect::<Vec<_>>(),
            };
            for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
                cuda::adam_step(p, g, &mut self.m[i], &mut self.v[i], shadows[i].take(), &s)?;
            }
            return Ok(());
        }
        let decay_factor = 1.0 - lr * c.weight_decay;
        for ((p, g), (m, v)) in params.iter_mut().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            let (p, g, m, v) = (p.cpu_data_mut()?, g.cpu_data()?, m.cpu_data_mut()?, v.cpu_data_mut()?);
            for i in 0..p.len() {
                let mut gi = g[i];
                if c.weight_decay != 0.0 {
                    if c.decoupled {
                        p[i] *= decay_factor;
                    } else {
                        gi += c.weight_decay * p[i];
                    }
                }
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
                let denom = v[i].sqrt() / bc2_sqrt + c.eps;
                p[i] -= step_size * m[i] / denom;
            }
        }
        if let Some(e) = ema {
            e.update(params)?;
        }
        Ok(())
    }
}

/// Scale all gradients so their global L2 norm is at most `max_norm` (as `torch.nn.utils.clip_grad_norm_`):
/// norm = √(Σ g²) over every element of every tensor (accumulated in f64); when
/// `max_norm / (norm + 1e-6) < 1` every gradient is multiplied by that factor. Returns the norm before clipping.
/// A non-finite norm (an inf/NaN gradient) is returned with the gradients untouched, so the caller can skip the
/// step.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f32) -> Result<f32> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::msg(format!("clip_grad_norm: max_norm must be positive and finite, got {max_norm}")));
    }
    let on_cpu = all_cpu("clip_grad_norm", grads.iter())?;
    let norm = if on_cpu {
        let mut sum_sq = 0.0f64;
        for g in grads.iter() {
            sum_sq += g.cpu_data()?.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
        }
        sum_sq.sqrt()
    } else {
        cuda::global_norm(grads)?
    };
    if !norm.is_finite() {
        return Ok(norm as f32);
    }
    let coef = (max_norm as f64 / (norm + 1e-6)) as f32;
    if coef < 1.0 {
        for g in grads.iter_mut() {
            if on_cpu {
                g.cpu_data_mut()?.iter_mut().for_each(|x| *x *= coef);
            } else {
                cuda::scale_in_place(g, coef)?;
            }
        }
    }
    Ok(norm as f32)
}

/// Linear warm-up as in the official DDPM code, `lr · min(step / warmup, 1)`, where `step` is the number of
/// updates already taken (the global step *before* this update, as TF's `global_step` read inside the train op
/// and PyTorch's `LambdaLR(lambda s: min(s, warmup) / warmup)`): the first update (step 0) uses lr 0, update k
/// (0-based) uses lr·k/warmup, and from step `warmup` on the full rate. `warmup_steps == 0` means no warm-up.
pub fn warmup_lr(step: u64, base_lr: f32, warmup_steps: u64) -> f32 {
    if warmup_steps == 0 || step >= warmup_steps {
        return base_lr;
    }
    (base_lr as f64 * step as f64 / warmup_steps as f64) as f32
}

/// Exponential moving average of the parameters (DDPM: decay 0.9999), updated after each optimizer step:
/// shadow ← decay·shadow + (1−decay)·p, computed as shadow −= (1−decay)(shadow − p) like TF's
/// `ExponentialMovingAverage`.
#[derive(Clone, Debug)]
pub struct Ema {
    decay: f32,
    shadow: Vec<Tensor>,
}

impl Ema {
    /// Start the average at the current parameters.
    pub fn new(params: &[Tensor], decay: f32) -> Result<Ema> {
        Ema::from_state(params.to_vec(), decay)
    }

    /// Resume from checkpointed shadow weights.
    pub fn from_state(shadow: Vec<Tensor>, decay: f32) -> Result<Ema> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::msg(format!("Ema: decay must be in [0, 1], got {decay}")));
        }
        Ok(Ema { decay, shadow })
    }

    pub fn update(&mut self, params: &[Tensor]) -> Result<()> {
        self.check(params)?;
        let on_cpu = all_cpu("Ema::update", self.shadow.iter().chain(params))?;
        let rate = 1.0 - self.decay;
        for (s, p) in self.shadow.iter_mut().zip(params) {
            if !on_cpu {
                cuda::ema_update(s, p, rate)?;
                continue;
            }
            // Copy-on-write: the shadow may still share storage with the parameters it started from.
            let (s, p) = (s.cpu_data_mut()?, p.cpu_data()?);
            s.iter_mut().zip(p).for_each(|(s, &p)| *s -= rate * (*s - p));
        }
        Ok(())
    }

    /// Same count and shapes as the shadow.
    fn check(&self, params: &[Tensor]) -> Result<()> {
        ensure_shape!(
            params.len() == self.shadow.len(),
            "Ema::update",
            "{} params for {}",
            params.len(),
            self.shadow.len()
        );
        for (i, (s, p)) in self.shadow.iter().zip(params).enumerate() {
            ensure_shape!(
                s.shape() == p.shape(),
                "Ema::update",
                "param {i}: {:?} vs shadow {:?}",
                p.shape(),
                s.shape()
            );
        }
        Ok(())
    }

    pub fn decay(&self) -> f32 {
        self.decay
    }

    pub fn shadow(&self) -> &[Tensor] {
        &self.shadow
    }

    pub fn into_shadow(self) -> Vec<Tensor> {
        self.shadow
    }
}
