mod common;
use common::*;
use ddpm_cuda::ops::concat::concat_channels;
use ddpm_cuda::{Tensor, Var};

/// Concatenation by explicit (n, c, rest) indexing.
fn naive(xs: &[Tensor]) -> Vec<f32> {
    let n = xs[0].shape()[0];
    let rest: usize = xs[0].shape()[2..].iter().product();
    let mut y = Vec::new();
    for ni in 0..n {
        for x in xs {
            let (c, v) = (x.shape()[1], x.to_vec().unwrap());
            for ci in 0..c {
                for r in 0..rest {
                    y.push(v[(ni * c + ci) * rest + r]);
                }
            }
        }
    }
    y
}

#[test]
fn concat_forward_matches_naive() {
    for (k, shapes) in [
        vec![vec![2, 3, 4, 5], vec![2, 1, 4, 5], vec![2, 2, 4, 5]],
        vec![vec![3, 2], vec![3, 5]],
        vec![vec![2, 3, 7]],
        vec![vec![2, 2, 3, 3], vec![2, 0, 3, 3], vec![2, 1, 3, 3]],
    ]
    .into_iter()
    .enumerate()
    {
        let xs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| rand_tensor(s, (10 * k + i) as u64)).collect();
        let vars: Vec<Var> = xs.iter().cloned().map(Var::constant).collect();
        let y = concat_channels(&vars.iter().collect::<Vec<_>>()).unwrap();
        let mut want_shape = shapes[0].clone();
        want_shape[1] = shapes.iter().map(|s| s[1]).sum();
        assert_eq!(y.shape(), &want_shape[..]);
        assert_eq!(y.value().to_vec().unwrap(), naive(&xs));
    }
}

#[test]
fn concat_backward_matches_finite_differences() {
    let xs = [rand_tensor(&[3, 2, 3, 5], 1), rand_tensor(&[3, 1, 3, 5], 2), rand_tensor(&[3, 3, 3, 5], 3)];
    check_grads("concat", |v| concat_channels(&[&v[0], &v[1], &v[2]]), &xs, 1e-2, 1e-3, 90);
    // The same var twice: its gradient is the sum of both slices.
    let x = rand_tensor(&[2, 3, 5], 4);
    check_grads("concat self", |v| concat_channels(&[&v[0], &v[0]]), &[x], 1e-2, 1e-3, 30);
}

#[test]
fn concat_rejects_empty_and_mismatched_inputs() {
    assert!(concat_channels(&[]).is_err());
    let v = |s: &[usize]| Var::constant(rand_tensor(s, 1));
    assert!(concat_channels(&[&v(&[2, 3, 4, 4]), &v(&[2, 3, 4, 5])]).is_err(), "spatial differs");
    assert!(concat_channels(&[&v(&[2, 3, 4, 4]), &v(&[3, 3, 4, 4])]).is_err(), "batch differs");
    assert!(concat_channels(&[&v(&[2, 3, 4, 4]), &v(&[2, 3, 16])]).is_err(), "rank differs");
    assert!(concat_channels(&[&v(&[6])]).is_err(), "1-D");
}
