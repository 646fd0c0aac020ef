//! `ddpm-cuda selftest`: every device kernel against the CPU reference on the same inputs, as a table of
//! op, shape, max abs / rel error and pass/fail. Any failure (including an op the device lacks) fails the run.

use crate::ops::diffusion_step::{q_sample, reverse_step, StepCoefs};
use crate::{Device, Error, Result, Tensor};

type CaseFn = Box<dyn Fn(&Device) -> Result<Vec<Tensor>>>;

struct Case {
    op: &'static str,
    shape: String,
    tol: f32,
    run: CaseFn,
}

/// Deterministic inputs in [-1, 1] that do not depend on any engine RNG.
fn input(shape: &[usize], seed: u32, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|i| (i as f32 * 0.618_034 + seed as f32 * 0.414_213).fract() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape)?.to_device(device)
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for shape in [vec![8, 128, 32, 32], vec![3, 5, 7, 11]] {
        let s = shape.clone();
        cases.push(Case {
            op: "silu fwd+bwd",
            shape: format!("{shape:?}"),
            tol: 1e-5,
            run: Box::new(move |d| {
                let (x, g) = (input(&s, 1, d)?, input(&s, 2, d)?);
                Ok(vec![crate::ops::silu::forward(&x)?, crate::ops::silu::backward(&x, &g)?])
            }),
        });
        let s = shape.clone();
        cases.push(Case {
            op: "add",
            shape: format!("{shape:?}"),
            tol: 1e-6,
            run: Box::new(move |d| Ok(vec![input(&s, 1, d)?.add(&input(&s, 2, d)?)?])),
        });
        let s = shape.clone();
        cases.push(Case {
            op: "q_sample",
            shape: format!("{shape:?}"),
            tol: 1e-6,
            run: Box::new(move |d| {
                let a: Vec<f32> = (0..s[0]).map(|i| 0.9 - 0.1 * i as f32).collect();
                let b: Vec<f32> = a.iter().map(|a| (1.0 - a * a).sqrt()).collect();
                Ok(vec![q_sample(&input(&s, 1, d)?, &input(&s, 2, d)?, &a, &b)?])
            }),
        });
        let s = shape.clone();
        cases.push(Case {
            op: "reverse_step",
            shape: format!("{shape:?}"),
            tol: 1e-5,
            run: Box::new(move |d| {
                let c =
                    StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.1, sigma: 0.2 };
                let (x, e, z) = (input(&s, 1, d)?, input(&s, 2, d)?, input(&s, 3, d)?);
                Ok(vec![reverse_step(&x, &e, Some(&z), c)?])
            }),
        });
    }
    cases
}

/// Run every case on `device` and on the CPU; print the table; Err if any case fails.
pub fn run(device: &Device) -> Result<()> {
    if device.is_cpu() {
        return Err(Error::msg("selftest compares a GPU against the CPU reference: use --device cuda[:i]"));
    }
    println!("{:<16} {:<18} {:>12} {:>12}  result", "op", "shape", "max abs err", "max rel err");
    let mut failures = 0;
    for case in cases() {
        let outcome = (case.run)(&Device::Cpu).and_then(|want| Ok((want, (case.run)(device)?)));
        let (abs, rel, ok, note) = match outcome {
            Ok((want, got)) => {
                // Pass when every element has |cpu − device| ≤ tol · max(1, |cpu|).
                let (mut abs, mut rel, mut worst) = (0.0f32, 0.0f32, 0.0f32);
                for (w, g) in want.iter().zip(&got) {
                    let (w, g) = (w.to_vec()?, g.to_vec()?);
                    for (a, b) in w.iter().zip(&g) {
                        let e = (a - b).abs();
                        abs = abs.max(e);
                        rel = rel.max(e / a.abs().max(1e-3));
                        worst = worst.max(e / a.abs().max(1.0));
                    }
                }
                let ok = worst <= case.tol && worst.is_finite() && want.len() == got.len();
                (abs, rel, ok, String::new())
            }
            Err(e) => (f32::NAN, f32::NAN, false, format!(" ({e})")),
        };
        failures += usize::from(!ok);
        println!(
            "{:<16} {:<18} {:>12.3e} {:>12.3e}  {}{}",
            case.op,
            case.shape,
            abs,
            rel,
            if ok { "pass" } else { "FAIL" },
            note
        );
    }
    if failures > 0 {
        return Err(Error::msg(format!("selftest: {failures} case(s) failed on {device}")));
    }
    println!("selftest: all cases passed on {device}");
    Ok(())
}
