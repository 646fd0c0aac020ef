mod common;
use common::*;
use ddpm_cuda::ops::group_norm::{group_norm, group_norm_silu};
use ddpm_cuda::ops::silu;
use ddpm_cuda::{Tensor, Var};

/// GroupNorm in f64 with explicit (n, c, s) loops, independent of the op's chunked layout.
fn naive_group_norm(x: &[f32], shape: &[usize], gamma: &[f32], beta: &[f32], groups: usize, eps: f64) -> Vec<f64> {
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    let cpg = c / groups;
    let at = |ni: usize, ci: usize, si: usize| x[(ni * c + ci) * s + si] as f64;
    let mut y = vec![0.0; x.len()];
    for ni in 0..n {
        for g in 0..groups {
            let members: Vec<(usize, usize)> =
                (g * cpg..(g + 1) * cpg).flat_map(|ci| (0..s).map(move |si| (ci, si))).collect();
            let m = members.len() as f64;
            let mean = members.iter().map(|&(ci, si)| at(ni, ci, si)).sum::<f64>() / m;
            let var = members.iter().map(|&(ci, si)| (at(ni, ci, si) - mean).powi(2)).sum::<f64>() / m;
            for &(ci, si) in &members {
                let xhat = (at(ni, ci, si) - mean) / (var + eps).sqrt();
                y[(ni * c + ci) * s + si] = xhat * gamma[ci] as f64 + beta[ci] as f64;
            }
        }
    }
    y
}

fn params(c: usize, seed: u64) -> (Tensor, Tensor) {
    // γ around 1 and β around 0, but neither trivial, so both affine terms are exercised.
    let gamma = rand_tensor(&[c], seed).scale(0.5).unwrap().add(&Tensor::ones(&[c], &ddpm_cuda::Device::Cpu).unwrap());
    (gamma.unwrap(), rand_tensor(&[c], seed + 1).scale(0.5).unwrap())
}

#[test]
fn group_norm_forward_matches_naive_f64() {
    let cases: &[(&[usize], usize)] = &[
        (&[2, 4, 3, 5], 1),
        (&[2, 4, 3, 5], 2),
        (&[2, 4, 3, 5], 4),
        (&[3, 6, 5, 3], 3),
        (&[2, 6], 3),
        (&[2, 4, 7], 2),
    ];
    for (i, &(shape, groups)) in cases.iter().enumerate() {
        // An offset and a spread in x so mean subtraction and variance both matter.
        let x = rand_tensor(shape, 10 + i as u64).scale(3.0).unwrap();
        let x = ddpm_cuda::ops::elementwise::add_scalar_tensor(&x, 2.0).unwrap();
        let (gamma, beta) = params(shape[1], 20 + i as u64);
        let y = group_norm(
            &Var::constant(x.clone()),
            &Var::constant(gamma.clone()),
            &Var::constant(beta.clone()),
            groups,
            1e-6,
        )
        .unwrap();
        let want = naive_group_norm(
            &x.to_vec().unwrap(),
            shape,
            &gamma.to_vec().unwrap(),
            &beta.to_vec().unwrap(),
            groups,
            1e-6,
        );
        assert_eq!(y.shape(), shape);
        for (a, b) in y.value().to_vec().unwrap().iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 2e-5, "shape {shape:?} groups {groups}: {a} vs {b}");
        }
    }
}

#[test]
fn group_norm_normalizes_each_group_to_zero_mean_unit_variance() {
    // With γ = 1, β = 0 every (n, group) slice of the output has mean 0 and (biased) variance ≈ 1.
    let x = rand_tensor(&[2, 6, 4, 4], 3);
    let ones = Tensor::ones(&[6], &ddpm_cuda::Device::Cpu).unwrap();
    let zeros = Tensor::zeros(&[6], &ddpm_cuda::Device::Cpu).unwrap();
    let y = group_norm(&Var::constant(x), &Var::constant(ones), &Var::constant(zeros), 3, 1e-6).unwrap();
    for slice in y.value().to_vec().unwrap().chunks(2 * 16) {
        let m = slice.iter().map(|&v| v as f64).sum::<f64>() / slice.len() as f64;
        let v = slice.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / slice.len() as f64;
        assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "mean {m} var {v}");
    }
}

#[test]
fn group_norm_backward_matches_finite_differences() {
    for &(shape, groups) in
        &[(&[3, 6, 5, 3][..], 3usize), (&[2, 4, 3, 5][..], 1), (&[2, 4, 3, 5][..], 4), (&[3, 4][..], 2)]
    {
        let x = rand_tensor(shape, 4).scale(2.0).unwrap();
        let (gamma, beta) = params(shape[1], 5);
        check_grads(
            &format!("group_norm {shape:?} g{groups}"),
            |v| group_norm(&v[0], &v[1], &v[2], groups, 1e-5),
            &[x, gamma, beta],
            1e-2,
            2e-3,
            90,
        );
    }
}

#[test]
fn group_norm_silu_matches_composition() {
    let x = rand_tensor(&[3, 6, 5, 3], 6).scale(2.0).unwrap();
    let (gamma, beta) = params(6, 7);
    let [x, gamma, beta] = [x, gamma, beta].map(Var::constant);
    let fused = group_norm_silu(&x, &gamma, &beta, 3, 1e-6).unwrap();
    let composed = silu(&group_norm(&x, &gamma, &beta, 3, 1e-6).unwrap()).unwrap();
    assert!(fused.value().max_abs_diff(composed.value()).unwrap() < 1e-6);
}

#[test]
fn group_norm_silu_gradients_match_composition_and_finite_differences() {
    let x = rand_tensor(&[3, 6, 5, 3], 8).scale(2.0).unwrap();
    let (gamma, beta) = params(6, 9);
    let inputs = [x, gamma, beta];
    let seed = rand_tensor(&[3, 6, 5, 3], 11);
    let grads_of = |fused: bool| {
        let tape = ddpm_cuda::Tape::new();
        let v: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = if fused {
            group_norm_silu(&v[0], &v[1], &v[2], 3, 1e-6).unwrap()
        } else {
            silu(&group_norm(&v[0], &v[1], &v[2], 3, 1e-6).unwrap()).unwrap()
        };
        let g = tape.backward_with(&y, seed.clone()).unwrap();
        v.iter().map(|vi| g.get(vi).unwrap().clone()).collect::<Vec<_>>()
    };
    for (a, b) in grads_of(true).iter().zip(grads_of(false)) {
        assert!(a.max_abs_diff(&b).unwrap() < 1e-5);
    }
    check_grads("group_norm_silu", |v| group_norm_silu(&v[0], &v[1], &v[2], 3, 1e-5), &inputs, 1e-2, 2e-3, 90);
}

#[test]
fn group_norm_rejects_bad_arguments() {
    let x = Var::constant(rand_tensor(&[2, 6, 3, 3], 1));
    let p = |c: usize| Var::constant(Tensor::ones(&[c], &ddpm_cuda::Device::Cpu).unwrap());
    assert!(group_norm(&x, &p(6), &p(6), 4, 1e-6).is_err(), "6 channels in 4 groups");
    assert!(group_norm(&x, &p(6), &p(6), 0, 1e-6).is_err(), "zero groups");
    assert!(group_norm(&x, &p(5), &p(6), 3, 1e-6).is_err(), "gamma length");
    assert!(group_norm(&x, &p(6), &p(3), 3, 1e-6).is_err(), "beta length");
    assert!(group_norm_silu(&x, &p(6), &p(6), 4, 1e-6).is_err());
    let flat = Var::constant(rand_tensor(&[6], 1));
    assert!(group_norm(&flat, &p(6), &p(6), 3, 1e-6).is_err(), "1-D input");
}
