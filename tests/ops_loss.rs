mod common;
use common::*;
use ddpm_cuda::ops::loss::mse;
use ddpm_cuda::{Tape, Tensor, Var};

#[test]
fn mse_matches_closed_form() {
    let (p, t) = (rand_tensor(&[2, 3, 4, 5], 1), rand_tensor(&[2, 3, 4, 5], 2));
    let loss = mse(&Var::constant(p.clone()), &Var::constant(t.clone())).unwrap();
    assert_eq!(loss.shape(), &[] as &[usize]);
    let (pv, tv) = (p.to_vec().unwrap(), t.to_vec().unwrap());
    let want = pv.iter().zip(&tv).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() / pv.len() as f64;
    assert!((loss.value().item().unwrap() as f64 - want).abs() < 1e-6);
    // By hand: errors (1, −2, 0, 3) → (1 + 4 + 0 + 9) / 4 = 3.5.
    let a = Tensor::from_vec(vec![1.0, 0.0, 2.0, 3.0], &[2, 2]).unwrap();
    let b = Tensor::from_vec(vec![0.0, 2.0, 2.0, 0.0], &[2, 2]).unwrap();
    assert_eq!(mse(&Var::constant(a), &Var::constant(b)).unwrap().value().item().unwrap(), 3.5);
}

#[test]
fn mse_backward_matches_finite_differences_and_closed_form() {
    let inputs = [rand_tensor(&[3, 7], 3), rand_tensor(&[3, 7], 4)];
    check_grads("mse", |v| mse(&v[0], &v[1]), &inputs, 1e-2, 1e-3, 21);
    // d/dp mean((p − t)²) = 2 (p − t) / n, and the negative for t.
    let tape = Tape::new();
    let (p, t) = (tape.leaf(inputs[0].clone()), tape.leaf(inputs[1].clone()));
    let grads = tape.backward(&mse(&p, &t).unwrap()).unwrap();
    let (pv, tv) = (inputs[0].to_vec().unwrap(), inputs[1].to_vec().unwrap());
    let (gp, gt) = (grads.get(&p).unwrap().to_vec().unwrap(), grads.get(&t).unwrap().to_vec().unwrap());
    for i in 0..pv.len() {
        let want = 2.0 * (pv[i] - tv[i]) / 21.0;
        assert!((gp[i] - want).abs() < 1e-6 && (gt[i] + want).abs() < 1e-6);
    }
}

#[test]
fn mse_rejects_bad_shapes() {
    let c = |s: &[usize]| Var::constant(rand_tensor(s, 1));
    assert!(mse(&c(&[2, 3]), &c(&[3, 2])).is_err());
    assert!(mse(&c(&[6]), &c(&[2, 3])).is_err());
    assert!(mse(&c(&[0, 3]), &c(&[0, 3])).is_err(), "empty");
}
