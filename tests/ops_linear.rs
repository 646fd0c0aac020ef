mod common;
use common::*;
use ddpm_cuda::ops::linear::linear;
use ddpm_cuda::{Tensor, Var};

/// y[n][o] = Σ_i x[n][i] · w[o][i] + b[o], in f64.
fn naive(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Vec<f64> {
    let (n, fan_in) = (x.shape()[0], x.shape()[1]);
    let fan_out = w.shape()[0];
    let (xs, ws) = (x.to_vec().unwrap(), w.to_vec().unwrap());
    let bs = b.map(|b| b.to_vec().unwrap());
    let mut y = vec![0.0f64; n * fan_out];
    for r in 0..n {
        for o in 0..fan_out {
            let mut acc = bs.as_ref().map_or(0.0, |b| b[o] as f64);
            for i in 0..fan_in {
                acc += xs[r * fan_in + i] as f64 * ws[o * fan_in + i] as f64;
            }
            y[r * fan_out + o] = acc;
        }
    }
    y
}

fn assert_close(got: &Tensor, want: &[f64], tol: f64) {
    let got = got.to_vec().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol, "element {i}: {g} vs {w}");
    }
}

#[test]
fn linear_forward_matches_naive_loops() {
    let (x, w, b) = (rand_tensor(&[3, 5], 1), rand_tensor(&[4, 5], 2), rand_tensor(&[4], 3));
    let c = Var::constant;
    let y = linear(&c(x.clone()), &c(w.clone()), Some(&c(b.clone()))).unwrap();
    assert_eq!(y.shape(), &[3, 4]);
    assert_close(y.value(), &naive(&x, &w, Some(&b)), 1e-5);
    let y = linear(&c(x.clone()), &c(w.clone()), None).unwrap();
    assert_close(y.value(), &naive(&x, &w, None), 1e-5);
    // A larger one that goes through the GEMM's blocked paths.
    let (x, w, b) = (rand_tensor(&[37, 70], 4), rand_tensor(&[45, 70], 5), rand_tensor(&[45], 6));
    let y = linear(&c(x.clone()), &c(w.clone()), Some(&c(b.clone()))).unwrap();
    assert_close(y.value(), &naive(&x, &w, Some(&b)), 1e-4);
}

#[test]
fn linear_backward_with_bias_matches_finite_differences() {
    let inputs = [rand_tensor(&[3, 5], 7), rand_tensor(&[4, 5], 8), rand_tensor(&[4], 9)];
    check_grads("linear+bias", |v| linear(&v[0], &v[1], Some(&v[2])), &inputs, 1e-2, 1e-3, 100);
}

#[test]
fn linear_backward_without_bias_matches_finite_differences() {
    let inputs = [rand_tensor(&[3, 5], 10), rand_tensor(&[4, 5], 11)];
    check_grads("linear", |v| linear(&v[0], &v[1], None), &inputs, 1e-2, 1e-3, 100);
}

#[test]
fn linear_rejects_bad_shapes() {
    let c = |s: &[usize]| Var::constant(rand_tensor(s, 1));
    assert!(linear(&c(&[3, 5]), &c(&[4, 6]), None).is_err(), "in-feature mismatch");
    assert!(linear(&c(&[3, 5]), &c(&[4, 5]), Some(&c(&[5]))).is_err(), "bias length");
    assert!(linear(&c(&[3, 5]), &c(&[4, 5]), Some(&c(&[1, 4]))).is_err(), "bias rank");
    assert!(linear(&c(&[2, 3, 5]), &c(&[4, 5]), None).is_err(), "x rank");
    assert!(linear(&c(&[3, 5]), &c(&[20]), None).is_err(), "w rank");
}
