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

/// Flat indices of the elements a gradient check looks at, for a tensor of `shape`: every index along every axis
/// is hit (so every row, column, channel and batch item), the corners (every combination of first and last index
/// on each axis) are always included, and `extra` more elements are drawn at random (all elements when `extra` ≥
/// their number). Sorted, without repeats.
///
/// The coverage part walks the tensor along two wrapped diagonals: element k has coordinate k mod n_d on axis d
/// (and, on the second, n_d − 1 − k mod n_d) for k < max_d n_d, so each axis sees each of its indices at varied
/// positions on the other axes. (A plain `step_by(n / max)` lines up with the image width and can check one
/// column only.)
pub fn checked_elements(shape: &[usize], extra: usize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    if extra >= n {
        return (0..n).collect();
    }
    let flat = |coords: &[usize]| coords.iter().zip(shape).fold(0, |acc, (c, d)| acc * d + c);
    let mut picked = Vec::new();
    let longest = shape.iter().copied().max().unwrap_or(1);
    for k in 0..longest {
        let fwd: Vec<usize> = shape.iter().map(|&d| k % d).collect();
        let rev: Vec<usize> = shape.iter().map(|&d| d - 1 - k % d).collect();
        picked.push(flat(&fwd));
        picked.push(flat(&rev));
    }
    for mask in 0..1usize << shape.len().min(12) {
        let corner: Vec<usize> =
            shape.iter().enumerate().map(|(d, &len)| if mask >> d & 1 == 1 { len - 1 } else { 0 }).collect();
        picked.push(flat(&corner));
    }
    let mut s = 0x2545_F491_4F6C_DD1Du64 ^ n as u64;
    for _ in 0..extra {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        picked.push((s % n as u64) as usize);
    }
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// Check the tape's gradients of L = Σ r ⊙ f(inputs) (r random) against central differences with step `h`,
/// for every input at the elements `checked_elements` picks: every index of every axis, the corners, and
/// `max_per_input` more at random. Passes when
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
        for j in checked_elements(x.shape(), max_per_input) {
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

/// `../shared/data/<name>` (beside the repository), which must hold `probe`. Tests that need it are
/// `#[ignore = "needs ../shared/data/..."]`, so a plain `cargo test` lists them as ignored rather than passing
/// them silently; CI, which has ../shared, runs them with `cargo test --release -- --ignored shared_data_`, and
/// there a missing file is a failure, not a skip.
pub fn shared_data(name: &str, probe: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(name);
    assert!(
        dir.join(probe).is_file(),
        "this test needs {} (with {probe}); it runs only when asked for (--ignored)",
        dir.display()
    );
    dir
}
