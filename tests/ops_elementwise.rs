mod common;
use common::*;
use ddpm_cuda::ops::elementwise::{add, add_scalar, mul, scale, sub};
use ddpm_cuda::{Result, Tape, Tensor, Var};

type Op = fn(&Var, &Var) -> Result<Var>;
type Reference = fn(f64, f64) -> f64;
const OPS: [(&str, Op, Reference); 3] =
    [("add", add, |a, b| a + b), ("sub", sub, |a, b| a - b), ("mul", mul, |a, b| a * b)];

/// a ∘ b by the broadcasting rule written out per element: right-align, index 0 where a dim has size 1.
fn naive(a: &Tensor, b: &Tensor, f: fn(f64, f64) -> f64) -> (Vec<usize>, Vec<f64>) {
    let rank = a.rank().max(b.rank());
    let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
    let (sa, sb) = (pad(a.shape()), pad(b.shape()));
    let out: Vec<usize> = sa.iter().zip(&sb).map(|(&x, &y)| x.max(y)).collect();
    let (va, vb) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let flat =
        |s: &[usize], idx: &[usize]| idx.iter().zip(s).fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i });
    let n: usize = out.iter().product();
    let y = (0..n)
        .map(|mut lin| {
            let mut idx = vec![0; rank];
            for k in (0..rank).rev() {
                idx[k] = lin % out[k];
                lin /= out[k];
            }
            f(va[flat(&sa, &idx)] as f64, vb[flat(&sb, &idx)] as f64)
        })
        .collect();
    (out, y)
}

const CASES: &[(&[usize], &[usize])] = &[
    (&[2, 3, 4, 5], &[2, 3, 4, 5]), // same shape
    (&[2, 3, 1, 1], &[2, 3, 4, 5]), // time-embedding bias as a
    (&[2, 3, 4, 5], &[2, 3, 1, 1]), // ... and as b
    (&[2, 3, 4, 5], &[3, 1, 1]),    // per-channel vector, missing leading dim
    (&[1], &[2, 3, 4, 5]),          // scalar-like
    (&[2, 3, 4, 5], &[1]),
    (&[3, 1, 5], &[4, 1]),          // both operands stretched
    (&[2, 1, 3, 1], &[1, 4, 1, 5]), // alternating patterns
    (&[5], &[3, 5]),
    (&[], &[2, 3]), // rank-0 scalar
];

#[test]
fn broadcast_forward_matches_naive_indexing() {
    for (i, &(sa, sb)) in CASES.iter().enumerate() {
        let (a, b) = (rand_tensor(sa, 2 * i as u64 + 1), rand_tensor(sb, 2 * i as u64 + 2));
        for (name, op, f) in OPS {
            let y = op(&Var::constant(a.clone()), &Var::constant(b.clone())).unwrap();
            let (shape, want) = naive(&a, &b, f);
            assert_eq!(y.shape(), &shape[..], "{name} {sa:?} {sb:?}");
            for (got, w) in y.value().to_vec().unwrap().iter().zip(&want) {
                assert!((*got as f64 - w).abs() < 1e-6, "{name} {sa:?} {sb:?}: {got} vs {w}");
            }
        }
    }
}

#[test]
fn broadcast_backward_matches_finite_differences() {
    for (i, &(sa, sb)) in CASES.iter().enumerate() {
        let (a, b) = (rand_tensor(sa, 40 + i as u64), rand_tensor(sb, 60 + i as u64));
        for (name, op, _) in OPS {
            check_grads(
                &format!("{name} {sa:?} {sb:?}"),
                |v| op(&v[0], &v[1]),
                &[a.clone(), b.clone()],
                1e-2,
                1e-3,
                60,
            );
        }
    }
}

#[test]
fn large_bias_add_uses_the_parallel_paths_correctly() {
    // 4·8·33·17 = 17952 elements: above the single-thread cutoff in both forward and the bias reduction.
    let (n, c, h, w) = (4, 8, 33, 17);
    let x = rand_tensor(&[n, c, h, w], 7);
    let bias = rand_tensor(&[n, c, 1, 1], 8);
    let tape = Tape::new();
    let (xv, bv) = (tape.leaf(x.clone()), tape.leaf(bias.clone()));
    let y = add(&xv, &bv).unwrap();
    let (_, want) = naive(&x, &bias, |a, b| a + b);
    for (got, w) in y.value().to_vec().unwrap().iter().zip(&want) {
        assert!((*got as f64 - w).abs() < 1e-6);
    }
    let seed = rand_tensor(&[n, c, h, w], 9);
    let grads = tape.backward_with(&y, seed.clone()).unwrap();
    // d/d bias[n, c] of Σ seed ⊙ y is the sum of seed over that (n, c) plane.
    let plane_sums: Vec<f64> =
        seed.to_vec().unwrap().chunks(h * w).map(|p| p.iter().map(|&v| v as f64).sum()).collect();
    for (got, w) in grads.get(&bv).unwrap().to_vec().unwrap().iter().zip(&plane_sums) {
        assert!((*got as f64 - w).abs() < 1e-4, "{got} vs {w}");
    }
    assert_eq!(grads.get(&xv).unwrap().max_abs_diff(&seed).unwrap(), 0.0);
}

#[test]
fn scale_and_add_scalar_forward_and_backward() {
    let x = rand_tensor(&[3, 2, 5], 11);
    let xs = x.to_vec().unwrap();
    let y = scale(&Var::constant(x.clone()), -2.5).unwrap().into_value().to_vec().unwrap();
    assert!(xs.iter().zip(&y).all(|(a, b)| (a * -2.5 - b).abs() < 1e-6));
    let y = add_scalar(&Var::constant(x.clone()), 0.75).unwrap().into_value().to_vec().unwrap();
    assert!(xs.iter().zip(&y).all(|(a, b)| (a + 0.75 - b).abs() < 1e-6));
    check_grads("scale", |v| scale(&v[0], -2.5), std::slice::from_ref(&x), 1e-2, 1e-3, 30);
    check_grads("add_scalar", |v| add_scalar(&v[0], 0.75), &[x], 1e-2, 1e-3, 30);
}

#[test]
fn the_same_var_on_both_sides_gets_both_gradients() {
    // y = x ⊙ x: dy/dx = 2x, so the two operand gradients must be accumulated.
    let x = rand_tensor(&[2, 3], 12);
    check_grads("mul self", |v| mul(&v[0], &v[0]), &[x], 1e-2, 1e-3, 6);
}

#[test]
fn zero_sized_dims_broadcast_to_empty_outputs() {
    let tape = Tape::new();
    let a = tape.leaf(Tensor::from_vec(vec![], &[2, 0, 3]).unwrap());
    let b = tape.leaf(rand_tensor(&[2, 1, 3], 1));
    let y = mul(&a, &b).unwrap();
    assert_eq!(y.shape(), &[2, 0, 3]);
    let grads = tape.backward_with(&y, Tensor::from_vec(vec![], &[2, 0, 3]).unwrap()).unwrap();
    assert_eq!(grads.get(&b).unwrap().to_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn shapes_that_do_not_broadcast_are_errors() {
    let bad: &[(&[usize], &[usize])] = &[(&[2, 3], &[4, 3]), (&[2, 3, 4], &[3]), (&[2, 3, 4, 5], &[2, 3, 2, 1])];
    for &(sa, sb) in bad {
        let (a, b) = (Var::constant(rand_tensor(sa, 1)), Var::constant(rand_tensor(sb, 2)));
        for (name, op, _) in OPS {
            assert!(op(&a, &b).is_err(), "{name} {sa:?} {sb:?} should fail");
            assert!(op(&b, &a).is_err(), "{name} {sb:?} {sa:?} should fail");
        }
    }
}
