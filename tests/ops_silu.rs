mod common;
use common::*;
use ddpm_cuda::ops;

#[test]
fn silu_forward_matches_closed_form() {
    let x = rand_tensor(&[2, 3, 4, 5], 1);
    let y = ops::silu(&ddpm_cuda::Var::constant(x.clone())).unwrap();
    for (a, b) in x.to_vec().unwrap().iter().zip(y.value().to_vec().unwrap()) {
        let want = (*a as f64) / (1.0 + (-(*a as f64)).exp());
        assert!((b as f64 - want).abs() < 1e-6);
    }
}

#[test]
fn silu_backward_matches_finite_differences() {
    let x = rand_tensor(&[2, 3, 5, 7], 2).scale(3.0).unwrap();
    check_grads("silu", |v| ops::silu(&v[0]), &[x], 1e-2, 1e-3, 210);
}
