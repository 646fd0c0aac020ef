//! `ddpm-cuda selftest`: every device kernel against the CPU reference on the same inputs, as a table of
//! op, shape, max abs / rel error and pass/fail. Any failure (including an op the device lacks) fails the run.
//!
//! Error metric, per output tensor: |cpu − dev| / (|cpu| + rms(cpu)), so near-zero entries of a large-valued
//! tensor (cancellations in a long dot product) are judged against the tensor's scale, not against themselves.
//! A case passes when the worst entry over its outputs is ≤ its tolerance: 1e-5 for elementwise ops, 1e-4 for
//! the GEMM-shaped ones (f32 sums over up to 4608 terms in another order), looser for whole-model cases.

mod model;
mod ops;

use crate::{Device, Error, Result, Tensor};

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

type CaseFn = Box<dyn Fn(&Device) -> Result<Vec<Tensor>>>;

pub(crate) struct Case {
    op: String,
    shape: String,
    tol: f32,
    run: CaseFn,
}

pub(crate) fn case(op: impl Into<String>, shape: impl Into<String>, tol: f32, run: CaseFn) -> Case {
    Case { op: op.into(), shape: shape.into(), tol, run }
}

/// Deterministic inputs in [-1, 1) that do not depend on any engine RNG (a Weyl sequence per seed).
pub(crate) fn input(shape: &[usize], seed: u32, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let step = 0.618_034_f64 + seed as f64 * 0.001_23;
    let v = (0..n).map(|i| ((i as f64 * step + seed as f64 * 0.414_213).fract() * 2.0 - 1.0) as f32).collect();
    Tensor::from_vec(v, shape)?.to_device(device)
}

/// (max abs error, worst scaled error, root mean square of the reference) of one output.
fn compare(want: &[f32], got: &[f32]) -> (f32, f32) {
    let rms = (want.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / want.len().max(1) as f64).sqrt() as f32;
    let scale = rms.max(1e-20);
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
        let outcome = (case.run)(&Device::Cpu).and_then(|want| Ok((want, (case.run)(device)?)));
        let (abs, rel, ok, note) = match outcome {
            Ok((want, got)) if want.len() == got.len() => {
                let (mut abs, mut rel, mut note) = (0.0f32, 0.0f32, String::new());
                for (w, g) in want.iter().zip(&got) {
                    if w.shape() != g.shape() {
                        note = format!(" (shape {:?} vs {:?})", w.shape(), g.shape());
                        rel = f32::INFINITY;
                        continue;
                    }
                    let (a, r) = compare(&w.to_vec()?, &g.to_vec()?);
                    abs = abs.max(a);
                    rel = rel.max(r);
                }
                (abs, rel, rel <= case.tol, note)
            }
            Ok((want, got)) => (f32::NAN, f32::NAN, false, format!(" ({} outputs vs {})", want.len(), got.len())),
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
