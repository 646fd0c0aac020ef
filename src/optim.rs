//! Optimizer pieces for DDPM training: Adam/AdamW (PyTorch semantics), global gradient-norm clipping, linear
//! learning-rate warm-up, and an exponential moving average of the weights. All work on lists of tensors
//! (one per parameter) so the trainer owns the parameters; state is plain tensors and integers for checkpoints.
//! CPU implementations here; the CUDA launches (kernels/adam.cu) are in `optim/cuda.rs`. `Adam::step_with_ema`
//! fuses the EMA into the Adam pass on CUDA (one read of each parameter per step).

use crate::{ensure_shape, Device, Error, Result, Tensor};

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

    /// Counts and shapes of a step's operands (and the EMA's), all on one device; returns whether that is the CPU.
    fn check(&self, params: &[Tensor], grads: &[Tensor], ema: Option<&Ema>) -> Result<bool> {
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
        if let Some(e) = ema {
            e.check(params)?;
            all_cpu("Adam::step_with_ema", e.shadow.iter().chain(params.iter()))?;
        }
        Ok(on_cpu)
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
        let on_cpu = self.check(params, grads, ema.as_deref())?;
        self.step += 1;
        let c = self.config;
        // Bias corrections in f64 as PyTorch does (Python floats), then the update in f32 in PyTorch's order:
        // denom = √v / √(1−β₂ᵗ) + ε;  p −= (lr / (1−β₁ᵗ)) · m / denom.
        let t = self.step as i32;
        let bc1 = 1.0 - powi_exact(c.beta1 as f64, t as u32);
        let bc2_sqrt = (1.0 - powi_exact(c.beta2 as f64, t as u32)).sqrt() as f32;
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

/// `a^b` by binary exponentiation: the loop of compiler-rt's `__powidf2`, which `f64::powi` calls, written out so
/// that the device (kernels/adam.cu `opt_powi`) computes the same bits (a unit test checks it against `powi`).
pub fn powi_exact(mut a: f64, mut b: u32) -> f64 {
    let mut r = 1.0;
    loop {
        if b & 1 == 1 {
            r *= a;
        }
        b >>= 1;
        if b == 0 {
            return r;
        }
        a *= a;
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

/// The first step whose loss or gradient norm was not finite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonFinite {
    /// 1-based: the step that would have made the step count this.
    pub step: u64,
    /// "loss" or "gradient norm".
    pub what: &'static str,
    pub value: f32,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} became {} at step {}", self.what, self.value, self.step)
    }
}

/// What `TrainStep::report` reads: the last step's loss, gradient norm (before clipping) and learning rate, and
/// the first non-finite step if there was one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    pub loss: f32,
    pub grad_norm: f32,
    pub lr: f32,
    pub non_finite: Option<NonFinite>,
}

/// The optimizer half of a training step: `clip_grad_norm`, Adam at the `warmup_lr` rate and the EMA
/// (`Adam::step_with_ema`), in that order, guarded by the loss. A step whose loss or gradient norm is not finite
/// updates nothing (weights, moments, EMA, step count), nor does any step after it, so the weights stay as they
/// were before it until the caller reads `report` and stops.
///
/// On CUDA the step is three launches over every parameter (`cuda::MultiTensor`), bit-exact with the CPU's
/// per-tensor path except where the f64 norm's different summation order moves its f32 rounding (never seen), and
/// nothing waits for the device: the loss and norm come back into pinned memory, and the check runs on the device,
/// for `report` to read.
pub struct TrainStep {
    max_norm: f32,
    warmup_steps: u64,
    /// Test hook: this step's loss reads as NaN.
    nan_at_step: Option<u64>,
    /// The learning rate of the last step (computed on the host on either device).
    lr: f32,
    /// CPU: the last (loss, norm) and the first bad step.
    last: (f32, f32),
    bad: Option<NonFinite>,
    /// CUDA: the multi-tensor kernels' table and state, made at the first step.
    device: Option<cuda::MultiTensor>,
}

impl TrainStep {
    /// Clip to `max_norm`, warm the rate up over `warmup_steps`.
    pub fn new(max_norm: f32, warmup_steps: u64) -> Result<TrainStep> {
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            return Err(Error::msg(format!("clip_grad_norm: max_norm must be positive and finite, got {max_norm}")));
        }
        Ok(TrainStep { max_norm, warmup_steps, nan_at_step: None, lr: 0.0, last: (0.0, 0.0), bad: None, device: None })
    }

    /// Test hook (`DDPM_CUDA_TEST_NAN_AT_STEP`): the loss of 1-based step `step` reads as NaN.
    pub fn inject_nan_at(&mut self, step: Option<u64>) {
        self.nan_at_step = step;
    }

    /// One step on `grads` (clipped in place on the CPU) for a batch whose loss is the one-element `loss`.
    pub fn step(
        &mut self,
        adam: &mut Adam,
        ema: &mut Ema,
        params: &mut [Tensor],
        grads: &mut [Tensor],
        loss: &Tensor,
    ) -> Result<()> {
        ensure_shape!(loss.numel() == 1, "TrainStep", "a loss of {} elements", loss.numel());
        let on_cpu = adam.check(params, grads, Some(ema))?;
        if on_cpu != loss.device().is_cpu() {
            let operands: Vec<&Tensor> = std::iter::once(loss).chain(params.iter().take(1)).collect();
            return Err(Tensor::device_mismatch("TrainStep", &operands));
        }
        let lr = warmup_lr(adam.step, adam.config.lr, self.warmup_steps);
        if !on_cpu {
            let Device::Cuda(be) = params[0].device() else { unreachable!("checked: not on the CPU") };
            if self.device.is_none() {
                let sizes: Vec<usize> = params.iter().map(Tensor::numel).collect();
                self.device = Some(cuda::MultiTensor::new(&be, &sizes, adam.step)?);
            }
            let c = adam.config;
            let scalars = cuda::FusedScalars {
                max_norm: self.max_norm,
                base_lr: c.lr,
                warmup_steps: self.warmup_steps as i64,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                decoupled: c.decoupled,
                ema_rate: 1.0 - ema.decay,
                nan_at_step: self.nan_at_step.map_or(0, |s| s as i64),
            };
            let device = self.device.as_mut().expect("made above");
            device.step(params, grads, &mut adam.m, &mut adam.v, Some(&mut ema.shadow), loss, &scalars)?;
            // The device counts too (and stops counting at a bad step, after which the run stops unsaved).
            adam.step += 1;
            self.lr = lr;
            return Ok(());
        }
        if self.bad.is_some() {
            return Ok(());
        }
        let step = adam.step + 1;
        let mut l = loss.item()?;
        if self.nan_at_step == Some(step) {
            l = f32::NAN;
        }
        self.last = (l, f32::NAN);
        if !l.is_finite() {
            self.bad = Some(NonFinite { step, what: "loss", value: l });
            return Ok(());
        }
        let norm = clip_grad_norm(grads, self.max_norm)?;
        self.last = (l, norm);
        if !norm.is_finite() {
            self.bad = Some(NonFinite { step, what: "gradient norm", value: norm });
            return Ok(());
        }
        self.lr = lr;
        adam.step_with_ema(params, grads, lr, Some(ema))
    }

    /// The host's share of a step the device ran without `step` being called (a replayed CUDA graph of a captured
    /// `step`: the kernels advance their own state): the step count and the rate `report` gives.
    pub fn count_replayed_step(&mut self, adam: &mut Adam) {
        self.lr = warmup_lr(adam.step, adam.config.lr, self.warmup_steps);
        adam.step += 1;
    }

    /// After capturing a CUDA graph of `step`: what the capture could not upload (the multi-tensor table of the
    /// graph's gradient addresses) goes to the device now, before the graph's first replay.
    pub fn after_capture(&mut self) -> Result<()> {
        match &mut self.device {
            Some(d) => d.upload_pending_table(),
            None => Ok(()),
        }
    }

    /// The device addresses of every buffer `step` updates in place (parameters, Adam moments, EMA shadow), each
    /// made unshared first (a tensor sharing its storage is copied, as `step` would): a captured step writes to
    /// these addresses at every replay, so the caller replays only while they are unchanged. Empty on the CPU.
    pub fn owned_addresses(adam: &mut Adam, ema: &mut Ema, params: &mut [Tensor]) -> Result<Vec<u64>> {
        if params.first().is_none_or(|p| p.device().is_cpu()) {
            return Ok(Vec::new());
        }
        let mut out = cuda::addresses(params)?;
        for set in [&mut adam.m, &mut adam.v, &mut ema.shadow] {
            out.extend(cuda::addresses(set)?);
        }
        Ok(out)
    }

    /// The last step's loss, norm and rate, and the first non-finite step. On CUDA this waits for the device.
    pub fn report(&self) -> Result<StepReport> {
        let Some(device) = &self.device else {
            return Ok(StepReport { loss: self.last.0, grad_norm: self.last.1, lr: self.lr, non_finite: self.bad });
        };
        use cuda::state as st;
        let s = device.read_state()?;
        let non_finite = (s[st::BAD_STEP] != 0.0).then(|| NonFinite {
            step: s[st::BAD_STEP] as u64,
            what: if s[st::BAD_WHAT] == 1.0 { "loss" } else { "gradient norm" },
            value: s[st::BAD_VALUE] as f32,
        });
        Ok(StepReport { loss: s[st::LOSS] as f32, grad_norm: s[st::NORM] as f32, lr: self.lr, non_finite })
    }
}

#[cfg(test)]
mod tests {
    use super::powi_exact;

    #[test]
    fn powi_exact_is_f64_powi_bit_for_bit() {
        for base in [0.9f32, 0.999, 0.99, 0.95, 0.5, 0.9999] {
            let a = base as f64;
            for t in 1..=300_000u32 {
                assert_eq!(powi_exact(a, t).to_bits(), a.powi(t as i32).to_bits(), "{a}^{t}");
            }
        }
    }
}
