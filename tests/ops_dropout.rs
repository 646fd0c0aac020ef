mod common;
use common::*;
use ddpm_cuda::ops::dropout::dropout;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{Tensor, Var};

/// Values in [1, 3): never zero, so a zero output means "dropped".
fn nonzero_tensor(shape: &[usize], seed: u64) -> Tensor {
    let v = rand_vec(shape.iter().product(), seed).iter().map(|x| x + 2.0).collect();
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn dropout_keeps_about_one_minus_p_and_scales_exactly() {
    let n = 1 << 20;
    for p in [0.1f32, 0.3, 0.5] {
        let x = nonzero_tensor(&[n], 1);
        let mut rng = Philox::new(5);
        let y = dropout(&Var::constant(x.clone()), p, &mut rng, true).unwrap().into_value().to_vec().unwrap();
        let xs = x.to_vec().unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        let frac = kept as f64 / n as f64;
        // sd of the kept fraction is sqrt(p(1-p)/n) < 5e-4.
        assert!((frac - (1.0 - p as f64)).abs() < 0.003, "p={p}: kept fraction {frac}");
        for (a, b) in xs.iter().zip(&y) {
            assert!(*b == 0.0 || *b == a / (1.0 - p), "kept value {b} is not {a}/(1-{p})");
        }
        assert_eq!(rng.offset(), 1, "one draw per call");
    }
}

/// The documented rule: element e is kept iff the e-th uniform of the draw exceeds p.
#[test]
fn dropout_mask_is_uniform_above_p() {
    let x = nonzero_tensor(&[3, 37], 2);
    let p = 0.4;
    let y = dropout(&Var::constant(x.clone()), p, &mut Philox::from_state(77, 9), true).unwrap();
    let u = Philox::from_state(77, 9).uniform(x.numel());
    for ((a, b), u) in x.to_vec().unwrap().iter().zip(y.value().to_vec().unwrap()).zip(u) {
        assert_eq!(b, if u > p { a / (1.0 - p) } else { 0.0 });
    }
}

#[test]
fn dropout_same_state_same_mask_next_draw_differs() {
    let x = Var::constant(nonzero_tensor(&[4, 8, 8], 3));
    let mut a = Philox::new(21);
    let y1 = dropout(&x, 0.5, &mut a, true).unwrap().into_value().to_vec().unwrap();
    let y2 = dropout(&x, 0.5, &mut a, true).unwrap().into_value().to_vec().unwrap();
    let y1_again = dropout(&x, 0.5, &mut Philox::new(21), true).unwrap().into_value().to_vec().unwrap();
    assert_eq!(y1, y1_again);
    assert_ne!(y1, y2);
}

#[test]
fn dropout_is_identity_in_eval_or_with_p_zero() {
    let x = rand_tensor(&[2, 3, 4], 4);
    let mut rng = Philox::new(1);
    for (p, train) in [(0.5, false), (0.0, true)] {
        let y = dropout(&Var::constant(x.clone()), p, &mut rng, train).unwrap();
        assert_eq!(y.value().to_vec().unwrap(), x.to_vec().unwrap());
    }
    assert_eq!(rng.offset(), 0, "identity draws nothing");
}

#[test]
fn dropout_rejects_p_outside_unit_interval() {
    let x = Var::constant(rand_tensor(&[4], 5));
    for p in [1.0f32, 1.5, -0.1, f32::NAN] {
        assert!(dropout(&x, p, &mut Philox::new(0), true).is_err(), "p={p} accepted");
        assert!(dropout(&x, p, &mut Philox::new(0), false).is_err(), "p={p} accepted in eval");
    }
}

#[test]
fn dropout_backward_matches_finite_differences() {
    let x = rand_tensor(&[2, 3, 5, 7], 6);
    // Re-create the rng from the same state on every call so the mask is fixed.
    check_grads("dropout", |v| dropout(&v[0], 0.3, &mut Philox::from_state(99, 4), true), &[x], 1e-2, 1e-3, 210);
}
