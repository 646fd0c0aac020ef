mod common;
use common::*;
use ddpm_cuda::ops::reduce::{mean, sum};
use ddpm_cuda::{Tape, Tensor, Var};

#[test]
fn sum_and_mean_match_closed_forms() {
    let x = rand_tensor(&[2, 3, 4, 5], 1);
    let want: f64 = x.to_vec().unwrap().iter().map(|a| *a as f64).sum();
    let s = sum(&Var::constant(x.clone())).unwrap();
    let m = mean(&Var::constant(x.clone())).unwrap();
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(m.shape(), &[] as &[usize]);
    assert!((s.value().item().unwrap() as f64 - want).abs() < 1e-5);
    assert!((m.value().item().unwrap() as f64 - want / 120.0).abs() < 1e-7);
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.5], &[4]).unwrap();
    assert_eq!(sum(&Var::constant(x.clone())).unwrap().value().item().unwrap(), 10.5);
    assert_eq!(mean(&Var::constant(x)).unwrap().value().item().unwrap(), 2.625);
}

#[test]
fn sum_and_mean_backward_broadcast() {
    let x = rand_tensor(&[3, 4, 5], 2);
    check_grads("sum", |v| sum(&v[0]), std::slice::from_ref(&x), 1e-2, 1e-3, 60);
    check_grads("mean", |v| mean(&v[0]), std::slice::from_ref(&x), 1e-2, 1e-3, 60);
    // d sum / dx = 1 and d mean / dx = 1/n everywhere.
    for (is_mean, want) in [(false, 1.0f32), (true, 1.0 / 60.0)] {
        let tape = Tape::new();
        let leaf = tape.leaf(x.clone());
        let y = if is_mean { mean(&leaf) } else { sum(&leaf) }.unwrap();
        let g = tape.backward(&y).unwrap().get(&leaf).unwrap().clone();
        assert_eq!(g.shape(), x.shape());
        assert!(g.to_vec().unwrap().iter().all(|&v| v == want));
    }
}

#[test]
fn mean_of_empty_is_an_error() {
    let empty = Var::constant(Tensor::from_vec(vec![], &[0, 3]).unwrap());
    assert!(mean(&empty).is_err());
    assert_eq!(sum(&empty).unwrap().value().item().unwrap(), 0.0);
}
