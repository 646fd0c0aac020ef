//! `ddpm-cuda selftest`: every device kernel against the CPU reference on the same inputs, as a table of
//! op, shape, max abs / rel error and pass/fail. Any failure (including an op the device lacks) fails the run.
//!
//! Error metric, per output tensor: |cpu − dev| / (|cpu| + rms(cpu)), so near-zero entries of a large-valued
//! tensor (cancellations in a long dot product) are judged against the tensor's scale, not against themselves.
//! A case passes when the worst entry over its outputs is ≤ its tolerance: 1e-5 for elementwise ops, 1e-4 for
//! the GEMM-shaped ones (f32 sums over up to 4608 terms in another order), looser for whole-model cases.
//! A whole model's parameter gradients that are rounding noise or nearly so are judged against a floor instead (see
//! `SMALL_BELOW`), and every device output must live on the device: a silent CPU fallback fails the case.

pub(crate) mod bf16;
pub(crate) use bf16::BF16_ROUND;
mod model;
mod ops;

use crate::{DType, Device, Error, Result, Tensor};

/// Which shapes the cases use. `Full` is the cifar10 U-Net's own shapes (batch 2) for a real GPU; `Reduced` keeps
/// every conv family (3×3 same, 3×3 stride-2 TF-same, 1×1 skip, 3-channel in/out), every edge-tile and split path
/// of every kernel and the cifar10 U-Net's layout at fewer channels, sized for the PTX simulator (tools/cuda-sim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shapes {
    Full,
    Reduced,
}

impl Shapes {
    /// `Reduced` on the simulator, `Full` on a real GPU.
    pub fn for_device(device: &Device) -> Shapes {
        match device {
            Device::Cuda(b) if b.is_simulated() => Shapes::Reduced,
            _ => Shapes::Full,
        }
    }
}

/// Batch size of the op cases (keeps the CPU reference quick).
pub(crate) const B: usize = 2;

type CaseFn = Box<dyn Fn(&Device) -> Result<Vec<Tensor>>>;

pub(crate) struct Case {
    op: String,
    shape: String,
    tol: f32,
    /// Outputs from this index on are one model's parameter gradients, judged with `ZERO_FLOOR` (see `judge`).
    grads_from: Option<usize>,
    /// Judge each output by its relative L2 error (`judge_norm`) instead of elementwise.
    norm_wise: bool,
    run: CaseFn,
}

pub(crate) fn case(op: impl Into<String>, shape: impl Into<String>, tol: f32, run: CaseFn) -> Case {
    Case { op: op.into(), shape: shape.into(), tol, grads_from: None, norm_wise: false, run }
}

impl Case {
    /// Outputs `first..` are a model's parameter gradients (see `judge`).
    pub(crate) fn grads_from(mut self, first: usize) -> Case {
        self.grads_from = Some(first);
        self
    }

    /// Judge the outputs norm-wise (see `judge_norm`): for whole-model mixed-precision cases, where every
    /// activation is rounded on the way and single entries carry the rounding of a long chain.
    pub(crate) fn norm_wise(mut self) -> Case {
        self.norm_wise = true;
        self
    }
}

/// Some parameter gradients are zero in exact arithmetic (the attention key bias: softmax ignores a per-query
/// constant), and some are real but the small remainder of a large cancellation (the query bias: Σ_j dS_ij = 0, so
/// its gradient only sees how much the keys vary); either way both sides hold mostly rounding noise and the
/// tensor's own scale says nothing. Among a model's gradients (relative to the largest entry of any of them, L), a
/// reference tensor whose entries are all below `SMALL_BELOW`·L is judged against `ZERO_FLOOR`·L instead of its
/// own scale: an allowed error of tol·1e-5·L, far above the noise (≤ `ZERO_BELOW`·L, asserted for the key bias in
/// the unit tests) and still failing a small gradient computed wrongly (e.g. as 0) once it exceeds ~tol·1e-5·L.
/// Measured on the CPU reference: key bias ≤ 6e-10·L (small model), ≤ 2.6e-10·L (cifar10); the query bias
/// 3.6e-7·L (cifar10); every other gradient of the small model ≥ 5.4e-5·L.
#[cfg(test)]
const ZERO_BELOW: f32 = 1e-8;
const SMALL_BELOW: f32 = 1e-7;
const ZERO_FLOOR: f32 = 1e-5;

/// The verdict on outputs that cannot be compared: a different count, or any of them not on `device` (a silent
/// CPU fallback fails here, whatever the values).
fn wrong_outputs<D: PartialEq + std::fmt::Display>(
    want: &[Tensor],
    got: &[Tensor],
    devices: &[D],
    device: &D,
) -> Option<(f32, f32, String)> {
    if want.len() != got.len() {
        return Some((f32::NAN, f32::INFINITY, format!(" ({} outputs vs {})", want.len(), got.len())));
    }
    let away = misplaced(devices, device);
    let on = &devices[*away.first()?];
    Some((f32::NAN, f32::INFINITY, format!(" (output(s) {away:?} on {on}, not {device}: the device path fell back)")))
}

/// The largest |value| of a slice.
fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The reference outputs' values and L, the largest |entry| over the gradient outputs (from `grads_from` on; 0
/// without gradients), which both judges scale tiny gradients by.
fn reference_values(want: &[Tensor], grads_from: Option<usize>) -> Result<(Vec<Vec<f32>>, f32)> {
    let want_v = want.iter().map(Tensor::to_vec).collect::<Result<Vec<_>>>()?;
    let largest = grads_from.map_or(0.0, |g| want_v.iter().skip(g).map(|v| max_abs(v)).fold(0.0, f32::max));
    Ok((want_v, largest))
}

/// The verdict on one case: (max abs error, worst scaled error, a note on what went wrong; empty if nothing). A
/// worst error above `tol` gets a note naming its output.
/// `want` are the CPU reference's outputs, `got` the device's, on `devices` (where each output lives); `device`
/// is where they all must be (a silent CPU fallback fails here, whatever the values).
fn judge<D: PartialEq + std::fmt::Display>(
    want: &[Tensor],
    got: &[Tensor],
    devices: &[D],
    device: &D,
    grads_from: Option<usize>,
    tol: f32,
) -> Result<(f32, f32, String)> {
    if let Some(failed) = wrong_outputs(want, got, devices, device) {
        return Ok(failed);
    }
    let (want_v, largest) = reference_values(want, grads_from)?;
    let (mut abs, mut rel, mut note) = (0.0f32, 0.0f32, String::new());
    let mut worst = (0usize, 0.0f32);
    for (i, ((w, wv), g)) in want.iter().zip(&want_v).zip(got).enumerate() {
        if w.shape() != g.shape() {
            note = format!(" (shape {:?} vs {:?})", w.shape(), g.shape());
            rel = f32::INFINITY;
            continue;
        }
        let is_grad = grads_from.is_some_and(|first| i >= first);
        let m = max_abs(wv);
        let scale_floor = if is_grad && m < SMALL_BELOW * largest { ZERO_FLOOR * largest } else { 0.0 };
        let (a, r) = compare_floor(wv, &g.to_vec()?, scale_floor);
        if std::env::var_os("DDPM_SELFTEST_VERBOSE").is_some() {
            println!("    output {i}: max abs {a:.3e}, max rel {r:.3e}, max |ref| {m:.2e}");
        }
        abs = abs.max(a);
        if r > rel {
            worst = (i, m);
        }
        rel = rel.max(r);
    }
    if note.is_empty() && rel > tol {
        // Point at the tensor to look at (a model case's parameter index is the output index minus grads_from).
        note = format!(" (worst: output {}, max |ref| {:.1e})", worst.0, worst.1);
    }
    Ok((abs, rel, note))
}

/// `judge` with a norm-wise metric: per output, ‖dev − ref‖₂ / ‖ref‖₂. A model's gradient tensor whose entries are
/// all below `SMALL_BELOW`·L (L: the largest gradient entry, as in `judge`) is measured against ‖`ZERO_FLOOR`·L‖₂
/// over its length instead. A gradient computed as zero scores 1, one of the wrong sign 2.
fn judge_norm<D: PartialEq + std::fmt::Display>(
    want: &[Tensor],
    got: &[Tensor],
    devices: &[D],
    device: &D,
    grads_from: Option<usize>,
    tol: f32,
) -> Result<(f32, f32, String)> {
    if let Some(failed) = wrong_outputs(want, got, devices, device) {
        return Ok(failed);
    }
    let (want_v, largest) = reference_values(want, grads_from)?;
    let (mut abs, mut rel, mut worst) = (0.0f32, 0.0f32, 0usize);
    for (i, ((w, wv), g)) in want.iter().zip(&want_v).zip(got).enumerate() {
        if w.shape() != g.shape() {
            return Ok((f32::NAN, f32::INFINITY, format!(" (shape {:?} vs {:?})", w.shape(), g.shape())));
        }
        let gv = g.to_vec()?;
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let err = norm(&mut wv.iter().zip(&gv).map(|(a, b)| (*a - *b) as f64));
        let is_grad = grads_from.is_some_and(|first| i >= first);
        let floor = if is_grad && max_abs(wv) < SMALL_BELOW * largest {
            (ZERO_FLOOR * largest) as f64 * (wv.len() as f64).sqrt()
        } else {
            0.0
        };
        let scale = norm(&mut wv.iter().map(|&a| a as f64)).max(floor).max(1e-30);
        let r = if err.is_nan() { f32::INFINITY } else { (err / scale) as f32 };
        if std::env::var_os("DDPM_SELFTEST_VERBOSE").is_some() {
            println!("    output {i}: relative L2 error {r:.3e}, max |ref| {:.2e}", max_abs(wv));
        }
        abs = abs.max(wv.iter().zip(&gv).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max));
        if r > rel {
            (rel, worst) = (r, i);
        }
    }
    let note = if rel > tol { format!(" (worst: output {worst}, relative L2 error)") } else { String::new() };
    Ok((abs, rel, note))
}

/// Indices of the outputs that do not live on `device`.
fn misplaced<D: PartialEq>(devices: &[D], device: &D) -> Vec<usize> {
    devices.iter().enumerate().filter(|(_, d)| *d != device).map(|(i, _)| i).collect()
}

/// Deterministic inputs in [-1, 1) that do not depend on any engine RNG (a Weyl sequence per seed).
pub(crate) fn input(shape: &[usize], seed: u32, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let step = 0.618_034_f64 + seed as f64 * 0.001_23;
    let v = (0..n).map(|i| ((i as f64 * step + seed as f64 * 0.414_213).fract() * 2.0 - 1.0) as f32).collect();
    Tensor::from_vec(v, shape)?.to_device(device)
}

/// `input` rounded to bf16 values: bf16 storage on a CUDA device, the same values as f32 on the CPU.
pub(crate) fn input_bf16(shape: &[usize], seed: u32, device: &Device) -> Result<Tensor> {
    let t = round_bf16(&input(shape, seed, &Device::Cpu)?)?.to_device(device)?;
    if device.is_cpu() {
        Ok(t)
    } else {
        t.to_dtype(DType::Bf16)
    }
}

/// An f32 parameter the bf16 arms round to bf16 at use (conv/linear weights): the device gets the f32 values (its
/// op rounds them), the CPU reference the rounded ones.
pub(crate) fn param_bf16(t: &Tensor, device: &Device) -> Result<Tensor> {
    if device.is_cpu() {
        round_bf16(t)
    } else {
        t.to_device(device)
    }
}

/// A CPU tensor's values rounded to the nearest bf16 (ties to even), kept as f32.
pub(crate) fn round_bf16(t: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(bf16::round_bf16(&t.to_vec()?), t.shape())
}

/// `t` unchanged if it has `dtype` on a device (any dtype on the CPU), else an error: a bf16 case whose device
/// output came back f32 took another path.
pub(crate) fn expect_dtype(t: Tensor, dtype: DType) -> Result<Tensor> {
    if t.device().is_cpu() || t.dtype() == dtype {
        Ok(t)
    } else {
        Err(Error::msg(format!("expected a {dtype} output, got {} (the bf16 path was not taken)", t.dtype())))
    }
}

/// (max abs error, worst scaled error) of one output.
#[cfg(test)]
fn compare(want: &[f32], got: &[f32]) -> (f32, f32) {
    compare_floor(want, got, 0.0)
}

/// `compare` with the tensor's scale (its root mean square) raised to at least `floor`.
fn compare_floor(want: &[f32], got: &[f32], floor: f32) -> (f32, f32) {
    let rms = (want.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / want.len().max(1) as f64).sqrt() as f32;
    let scale = rms.max(floor).max(1e-20);
    let (mut abs, mut worst) = (0.0f32, 0.0f32);
    for (a, b) in want.iter().zip(got) {
        let e = (a - b).abs();
        abs = abs.max(e);
        // NaN on either side makes the case fail (max ignores NaN, so test explicitly).
        let r = if e.is_nan() { f32::INFINITY } else { e / (a.abs() + scale) };
        worst = worst.max(r);
    }
    (abs, worst)
}

fn all_cases(shapes: Shapes) -> Vec<Case> {
    let mut cases = ops::cases(shapes);
    cases.extend(model::cases(shapes));
    cases
}

/// Run every case whose op contains `filter` (or one of its comma-separated parts; all when None) on `device` and on the CPU; print the table; Err if
/// any case fails. `shapes` None picks by device (`Shapes::for_device`).
pub fn run(device: &Device, filter: Option<&str>, shapes: Option<Shapes>) -> Result<()> {
    if device.is_cpu() {
        return Err(Error::msg("selftest compares a GPU against the CPU reference: use --device cuda[:i]"));
    }
    let shapes = shapes.unwrap_or_else(|| Shapes::for_device(device));
    if let Device::Cuda(b) = device {
        println!("selftest on {} ({}), {:?} shapes", device, b.name(), shapes);
    }
    println!("{:<28} {:<28} {:>11} {:>11} {:>8}  result", "op", "shape", "max abs", "max rel", "tol");
    let (mut failures, mut ran) = (0, 0);
    for case in all_cases(shapes) {
        if filter.is_some_and(|f| !f.split(',').any(|part| case.op.contains(part))) {
            continue;
        }
        ran += 1;
        let outcome = (case.run)(&Device::Cpu).and_then(|want| {
            let got = (case.run)(device)?;
            let devices: Vec<Device> = got.iter().map(Tensor::device).collect();
            let judge = if case.norm_wise { judge_norm::<Device> } else { judge::<Device> };
            judge(&want, &got, &devices, device, case.grads_from, case.tol)
        });
        let (abs, rel, ok, note) = match outcome {
            Ok((abs, rel, note)) => (abs, rel, rel <= case.tol && note.is_empty(), note),
            Err(e) => (f32::NAN, f32::NAN, false, format!(" ({e})")),
        };
        failures += usize::from(!ok);
        println!(
            "{:<28} {:<28} {:>11.3e} {:>11.3e} {:>8.0e}  {}{}",
            case.op,
            case.shape,
            abs,
            rel,
            case.tol,
            if ok { "pass" } else { "FAIL" },
            note
        );
    }
    if ran == 0 {
        return Err(Error::msg(format!("selftest: no case matches the filter {filter:?}")));
    }
    if failures > 0 {
        return Err(Error::msg(format!("selftest: {failures} of {ran} case(s) failed on {device}")));
    }
    println!("selftest: all {ran} cases passed on {device}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_scales_by_the_reference_and_catches_nan() {
        let (abs, worst) = compare(&[100.0, 0.0, -100.0], &[100.0, 0.01, -100.0]);
        assert_eq!(abs, 0.01);
        // rms ≈ 81.6: a 0.01 error on the cancelled entry is ~1.2e-4 of the tensor's scale.
        assert!((worst - 0.01 / 81.649_66).abs() < 1e-7, "{worst}");
        assert_eq!(compare(&[1.0, 2.0], &[1.0, f32::NAN]).1, f32::INFINITY);
        assert_eq!(compare(&[0.0, 0.0], &[0.0, 0.0]).1, 0.0);
    }

    fn scaled(v: &[f32], f: f32) -> Vec<f32> {
        v.iter().map(|x| x * f).collect()
    }

    /// The small U-Net case's CPU outputs, the parameter names, and the indices (into the outputs) of the
    /// gradients of every `*.to_k.bias`.
    fn small_unet_outputs() -> (Vec<Tensor>, Vec<String>, Vec<usize>) {
        let want = model::forward_backward(&model::small_unet(), 2, &Device::Cpu).unwrap();
        let names = model::model(&model::small_unet(), &Device::Cpu).unwrap().1.names().to_vec();
        assert_eq!(want.len(), names.len() + 2);
        let key_bias: Vec<usize> =
            names.iter().enumerate().filter(|(_, n)| n.ends_with("to_k.bias")).map(|(i, _)| i + 2).collect();
        assert!(!key_bias.is_empty());
        (want, names, key_bias)
    }

    #[test]
    fn the_zero_floor_covers_exactly_the_key_bias_of_the_small_unet() {
        let (want, names, key_bias) = small_unet_outputs();
        let max_abs = |t: &Tensor| t.to_vec().unwrap().iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let largest = want[2..].iter().map(max_abs).fold(0.0, f32::max);
        for (i, t) in want.iter().enumerate().skip(2) {
            let m = max_abs(t);
            let name = &names[i - 2];
            if key_bias.contains(&i) {
                // Zero in exact arithmetic: only rounding noise, far below the threshold (but not exactly 0).
                assert!(m < 0.1 * ZERO_BELOW * largest, "{name}: {m:.2e} is not rounding noise (L = {largest:.2e})");
            } else {
                // Every other gradient is far above the ambiguous band, so the floor never stands in for it.
                assert!(m >= 10.0 * SMALL_BELOW * largest, "{name}: {m:.2e} too close to the band (L = {largest:.2e})");
            }
        }
        let devices = vec![Device::Cpu; want.len()];
        let (_, rel, note) = judge(&want, &want, &devices, &Device::Cpu, Some(2), 2e-3).unwrap();
        assert_eq!((rel, note.as_str()), (0.0, ""));
    }

    #[test]
    fn key_bias_rounding_noise_fails_the_plain_comparison_and_passes_with_the_floor() {
        let (want, _, key_bias) = small_unet_outputs();
        // A correct device: every output off by 2e-5 relative, and the key bias gradient holding its own
        // rounding noise of the same size (here: the reference's noise reversed and negated).
        let got: Vec<Tensor> = want
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v = t.to_vec().unwrap();
                let v = if key_bias.contains(&i) { v.iter().rev().map(|x| -x).collect() } else { scaled(&v, 1.00002) };
                Tensor::from_vec(v, t.shape()).unwrap()
            })
            .collect();
        let tol = 1e-3; // the case's tolerance
                        // The old comparison: each tensor against its own scale. The key bias noise is ~100% off.
        let old = want
            .iter()
            .zip(&got)
            .map(|(w, g)| compare(&w.to_vec().unwrap(), &g.to_vec().unwrap()).1)
            .fold(0.0f32, f32::max);
        assert!(old > tol, "the plain comparison passed ({old:.2e}): the case would not show the problem");
        let devices = vec![Device::Cpu; want.len()];
        let (_, rel, note) = judge(&want, &got, &devices, &Device::Cpu, Some(2), tol).unwrap();
        assert!(rel <= tol && note.is_empty(), "with the floor: {rel:.2e}{note}");

        // The floor does not hide a real error: a key bias gradient of 1% of the model's largest gradient fails,
        // and so does a 1e-2 error on any other gradient.
        let largest = want[2..]
            .iter()
            .map(|t| t.to_vec().unwrap().iter().fold(0.0f32, |m, x| m.max(x.abs())))
            .fold(0.0, f32::max);
        let mut bad = got.clone();
        let k = key_bias[0];
        bad[k] = Tensor::full(want[k].shape(), 0.01 * largest, &Device::Cpu).unwrap();
        assert!(judge(&want, &bad, &devices, &Device::Cpu, Some(2), tol).unwrap().1 > tol);
        let mut bad = got.clone();
        bad[3] = Tensor::from_vec(scaled(&want[3].to_vec().unwrap(), 1.01), want[3].shape()).unwrap();
        assert!(judge(&want, &bad, &devices, &Device::Cpu, Some(2), tol).unwrap().1 > tol);
    }

    #[test]
    fn a_small_gradient_is_judged_against_the_floor_and_still_fails_when_wrong() {
        let t = |v: Vec<f32>| Tensor::from_vec(v.clone(), &[v.len()]).unwrap();
        // Gradients [1, -0.5] and [5e-8, 1e-8]: the second is below SMALL_BELOW of the largest.
        let want = vec![t(vec![0.5]), t(vec![1.0, -0.5]), t(vec![5e-8, 1e-8])];
        let devices = vec![Device::Cpu; 3];
        // Rounding noise on it passes; against its own scale the same noise would be a 1e-2 error.
        let noisy = vec![want[0].clone(), want[1].clone(), t(vec![5e-8 + 5e-10, 1e-8])];
        let (_, rel, _) = judge(&want, &noisy, &devices, &Device::Cpu, Some(1), 2e-3).unwrap();
        assert!(rel < 1e-3, "{rel}");
        assert!(judge(&want, &noisy, &devices, &Device::Cpu, None, 2e-3).unwrap().1 > 1e-3);
        // Computed as zero, it fails the case's 2e-3 tolerance.
        let zeroed = vec![want[0].clone(), want[1].clone(), t(vec![0.0, 0.0])];
        let (_, rel, _) = judge(&want, &zeroed, &devices, &Device::Cpu, Some(1), 2e-3).unwrap();
        assert!(rel > 2e-3, "{rel}");
    }

    #[test]
    fn the_norm_wise_judge_passes_rounding_noise_and_fails_a_lost_gradient() {
        let t = |v: Vec<f32>| Tensor::from_vec(v.clone(), &[v.len()]).unwrap();
        let want = vec![t(vec![0.5]), t(vec![1.0, -0.5, 0.25]), t(vec![0.1, 0.2, -0.3])];
        let devices = vec![Device::Cpu; 3];
        let noisy: Vec<Tensor> =
            want.iter().map(|w| t(w.to_vec().unwrap().iter().map(|x| x * (1.0 + BF16_ROUND)).collect())).collect();
        let (_, rel, note) = judge_norm(&want, &noisy, &devices, &Device::Cpu, Some(1), 0.5).unwrap();
        assert!(rel <= BF16_ROUND * 1.0001 && note.is_empty(), "{rel} {note}");
        // A gradient computed as zero scores 1, one of the wrong sign 2: both fail the whole-model tolerance.
        let mut zeroed = want.clone();
        zeroed[2] = t(vec![0.0; 3]);
        assert!((judge_norm(&want, &zeroed, &devices, &Device::Cpu, Some(1), 0.5).unwrap().1 - 1.0).abs() < 1e-6);
        let mut flipped = want.clone();
        flipped[1] = want[1].scale(-1.0).unwrap();
        assert!((judge_norm(&want, &flipped, &devices, &Device::Cpu, Some(1), 0.5).unwrap().1 - 2.0).abs() < 1e-6);
    }

    #[test]
    fn bf16_inputs_are_rounded_to_nearest_even_on_the_cpu() {
        let x = round_bf16(&Tensor::from_vec(vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, 0.1], &[3]).unwrap()).unwrap();
        let v = x.to_vec().unwrap();
        // Ties go to the even neighbour; 0.1 is within 2⁻⁸ of itself.
        assert_eq!(&v[..2], &[1.0, 1.0 + 4.0 / 256.0]);
        assert!(((v[2] - 0.1) / 0.1).abs() <= BF16_ROUND);
        assert_eq!(input_bf16(&[2, 3], 1, &Device::Cpu).unwrap().dtype(), DType::F32);
        // bf16 storage exists only on CUDA devices.
        assert!(x.to_dtype(DType::Bf16).is_err());
        assert!(expect_dtype(x.clone(), DType::Bf16).is_ok(), "CPU outputs are f32 by design");
    }

    #[test]
    fn outputs_that_are_not_on_the_device_fail_the_case() {
        assert_eq!(misplaced(&["cuda:0", "cpu", "cuda:0", "cpu"], &"cuda:0"), vec![1, 3]);
        assert!(misplaced(&["cuda:0"; 3], &"cuda:0").is_empty());
        // A device run whose outputs came back from the CPU path: the values agree exactly, yet the case fails.
        let want = vec![Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap()];
        let (_, rel, note) = judge(&want, &want, &["cpu"], &"cuda:0", None, 2e-3).unwrap();
        assert!(rel.is_infinite() && note.contains("on cpu, not cuda:0"), "{rel} {note}");
        // The same outputs where they belong pass.
        assert_eq!(judge(&want, &want, &["cuda:0"], &"cuda:0", None, 2e-3).unwrap(), (0.0, 0.0, String::new()));
        assert_eq!(judge(&want, &want, &[Device::Cpu], &Device::Cpu, None, 2e-3).unwrap().1, 0.0);
    }

    #[test]
    fn every_case_runs_on_the_cpu_and_the_names_are_unique() {
        // Running the CPU side of the cheap cases checks the case code itself (shapes, argument order).
        for shapes in [Shapes::Full, Shapes::Reduced] {
            let cases = all_cases(shapes);
            let mut keys: Vec<String> = cases.iter().map(|c| format!("{} {}", c.op, c.shape)).collect();
            keys.sort();
            let n = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), n, "duplicate case names in {shapes:?}");
            // Full: everything but the big conv / GroupNorm shapes and the cifar10 model (slow on a CPU reference
            // alone). Reduced: everything (it is sized for a simulator, so the CPU side is quick).
            let heavy = |c: &Case| {
                shapes == Shapes::Full
                    && ((c.op.starts_with("conv2d") || c.op.starts_with("group_norm")) && !c.shape.starts_with("[3, ")
                        || c.op.contains("cifar10"))
            };
            for c in cases.iter().filter(|c| !heavy(c)) {
                let out = (c.run)(&Device::Cpu).unwrap_or_else(|e| panic!("{} {}: {e}", c.op, c.shape));
                assert!(!out.is_empty());
            }
        }
    }
}
