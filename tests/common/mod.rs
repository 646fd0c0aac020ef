//! Helpers shared by the integration tests: deterministic random tensors and a finite-difference gradient check.
#![allow(dead_code)]

use ddpm_cuda::{Result, Tape, Tensor, Var};

/// Deterministic values in [-1, 1) from a small xorshift generator (independent of the engine's Philox).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(rand_vec(shape.iter().product(), seed), shape).unwrap()
}

/// L = Σ r ⊙ f(x), accumulated in f64.
fn projected(f: &dyn Fn(&[Var]) -> Result<Var>, inputs: &[Tensor], r: &[f32]) -> f64 {
    let vars: Vec<Var> = inputs.iter().cloned().map(Var::constant).collect();
    let y = f(&vars).unwrap().into_value().to_vec().unwrap();
    y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Check the tape's gradients of L = Σ r ⊙ f(inputs) (r random) against central differences with step `h`,
/// for every input and up to `max_per_input` elements of each (spread over the tensor). Passes when
/// |analytic − numeric| ≤ tol · max(1, |numeric|) for every checked element.
pub fn check_grads(
    name: &str,
    f: impl Fn(&[Var]) -> Result<Var>,
    inputs: &[Tensor],
    h: f32,
    tol: f32,
    max_per_input: usize,
) {
    let tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = f(&vars).unwrap();
    let r = rand_tensor(y.shape(), 12345);
    let rv = r.to_vec().unwrap();
    let grads = tape.backward_with(&y, r).unwrap();
    let mut worst = 0.0f32;
    for (i, (x, v)) in inputs.iter().zip(&vars).enumerate() {
        let analytic = match grads.get(v) {
            Some(g) => g.to_vec().unwrap(),
            None => vec![0.0; x.numel()],
        };
        assert_eq!(analytic.len(), x.numel(), "{name}: gradient of input {i} has the wrong size");
        let n = x.numel();
        let stride = (n / max_per_input.max(1)).max(1);
        for j in (0..n).step_by(stride).take(max_per_input) {
            let eval = |delta: f32| {
                let mut xs = inputs.to_vec();
                let mut d = x.to_vec().unwrap();
                d[j] += delta;
                xs[i] = Tensor::from_vec(d, x.shape()).unwrap();
                projected(&f, &xs, &rv)
            };
            let numeric = ((eval(h) - eval(-h)) / (2.0 * h as f64)) as f32;
            let err = (analytic[j] - numeric).abs() / numeric.abs().max(1.0);
            worst = worst.max(err);
            assert!(
                err <= tol,
                "{name}: d/d input{i}[{j}]: analytic {} vs numeric {numeric} (rel err {err:.2e} > {tol:.0e})",
                analytic[j]
            );
        }
    }
    eprintln!("{name}: worst gradient error {worst:.2e}");
}
