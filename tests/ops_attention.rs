mod common;
use common::*;
use ddpm_cuda::ops::attention::attention;
use ddpm_cuda::{Tape, Tensor, Var};

/// out[b,c,i] = Σ_j softmax_j(Σ_c' q[b,c',i] k[b,c',j] / √C) v[b,c,j], directly in f64.
fn naive(q: &Tensor, k: &Tensor, v: &Tensor) -> Vec<f64> {
    let (b, c, t) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (q, k, v) = (q.to_vec().unwrap(), k.to_vec().unwrap(), v.to_vec().unwrap());
    let at = |x: &[f32], bi: usize, ci: usize, ti: usize| x[(bi * c + ci) * t + ti] as f64;
    let mut out = vec![0.0f64; b * c * t];
    for bi in 0..b {
        for i in 0..t {
            let scores: Vec<f64> = (0..t)
                .map(|j| (0..c).map(|ci| at(&q, bi, ci, i) * at(&k, bi, ci, j)).sum::<f64>() / (c as f64).sqrt())
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for ci in 0..c {
                out[(bi * c + ci) * t + i] = (0..t).map(|j| weights[j] / total * at(&v, bi, ci, j)).sum();
            }
        }
    }
    out
}

fn run(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let c = |x: &Tensor| Var::constant(x.clone());
    attention(&c(q), &c(k), &c(v)).unwrap().into_value()
}

fn assert_matches_naive(shape: &[usize], seed: u64, q_scale: f32, tol: f64) {
    let q = rand_tensor(shape, seed).scale(q_scale).unwrap();
    let (k, v) = (rand_tensor(shape, seed + 1), rand_tensor(shape, seed + 2));
    let got = run(&q, &k, &v);
    assert_eq!(got.shape(), shape);
    let got = got.to_vec().unwrap();
    let want = naive(&q, &k, &v);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g.is_finite() && (*g as f64 - w).abs() <= tol, "{shape:?} element {i}: {g} vs {w}");
    }
}

#[test]
fn attention_forward_matches_naive_loops() {
    assert_matches_naive(&[2, 5, 7], 1, 3.0, 1e-5);
    assert_matches_naive(&[3, 1, 4], 4, 1.0, 1e-5);
    assert_matches_naive(&[1, 3, 1], 5, 1.0, 1e-6);
    // Big enough for the GEMM's blocked kernels and the batch split.
    assert_matches_naive(&[5, 32, 64], 7, 2.0, 1e-4);
}

#[test]
fn attention_softmax_is_stable_for_large_scores() {
    // Scores in the thousands: a softmax without max subtraction would overflow to inf/NaN.
    assert_matches_naive(&[2, 4, 6], 11, 2000.0, 1e-3);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let shape = [2, 5, 7];
    let inputs = [rand_tensor(&shape, 21).scale(2.0).unwrap(), rand_tensor(&shape, 22), rand_tensor(&shape, 23)];
    check_grads("attention 2x5x7", |v| attention(&v[0], &v[1], &v[2]), &inputs, 1e-2, 1e-3, 70);
    let shape = [3, 3, 4];
    let inputs = [rand_tensor(&shape, 31), rand_tensor(&shape, 32).scale(2.5).unwrap(), rand_tensor(&shape, 33)];
    check_grads("attention 3x3x4", |v| attention(&v[0], &v[1], &v[2]), &inputs, 1e-2, 1e-3, 36);
}

#[test]
fn attention_partial_gradients_match_full_ones() {
    // When only some inputs are on the tape, the backward skips work; what it returns must not change.
    let shape = [2, 4, 6];
    let (q, k, v) = (rand_tensor(&shape, 41), rand_tensor(&shape, 42), rand_tensor(&shape, 43));
    let seed = rand_tensor(&shape, 44);
    let tape = Tape::new();
    let (ql, kl, vl) = (tape.leaf(q.clone()), tape.leaf(k.clone()), tape.leaf(v.clone()));
    let full = tape.backward_with(&attention(&ql, &kl, &vl).unwrap(), seed.clone()).unwrap();
    for which in 0..3 {
        let tape = Tape::new();
        let vars: Vec<Var> = [&q, &k, &v]
            .iter()
            .enumerate()
            .map(|(i, x)| if i == which { tape.leaf((*x).clone()) } else { Var::constant((*x).clone()) })
            .collect();
        let grads = tape.backward_with(&attention(&vars[0], &vars[1], &vars[2]).unwrap(), seed.clone()).unwrap();
        let want = full.get([&ql, &kl, &vl][which]).unwrap();
        assert_eq!(grads.get(&vars[which]).unwrap().max_abs_diff(want).unwrap(), 0.0, "input {which}");
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let c = |s: &[usize]| Var::constant(rand_tensor(s, 1));
    assert!(attention(&c(&[2, 5, 7]), &c(&[2, 5, 7]), &c(&[2, 5, 6])).is_err(), "v tokens");
    assert!(attention(&c(&[2, 5, 7]), &c(&[2, 4, 7]), &c(&[2, 5, 7])).is_err(), "k channels");
    assert!(attention(&c(&[2, 5, 7]), &c(&[1, 5, 7]), &c(&[2, 5, 7])).is_err(), "k batch");
    assert!(attention(&c(&[2, 5, 7, 1]), &c(&[2, 5, 7, 1]), &c(&[2, 5, 7, 1])).is_err(), "rank 4");
    assert!(attention(&c(&[5, 7]), &c(&[5, 7]), &c(&[5, 7])).is_err(), "rank 2");
    assert!(attention(&c(&[2, 0, 7]), &c(&[2, 0, 7]), &c(&[2, 0, 7])).is_err(), "no channels");
}

/// The largest U-Net attention (B=128, C=256, T=16·16): forward + backward time, and one batch item spot-checked
/// against the naive loops. `cargo test --release --test ops_attention -- --ignored --nocapture`.
#[test]
#[ignore]
fn attention_large_shape_timing() {
    let shape = [128, 256, 256];
    let (q, k, v) = (rand_tensor(&shape, 51), rand_tensor(&shape, 52), rand_tensor(&shape, 53));
    let tape = Tape::new();
    let (ql, kl, vl) = (tape.leaf(q.clone()), tape.leaf(k.clone()), tape.leaf(v.clone()));
    let start = std::time::Instant::now();
    let out = attention(&ql, &kl, &vl).unwrap();
    let forward_s = start.elapsed().as_secs_f64();
    let grads = tape.backward_with(&out, rand_tensor(&shape, 54)).unwrap();
    let backward_s = start.elapsed().as_secs_f64() - forward_s;
    eprintln!("attention {shape:?}: forward {forward_s:.3} s, backward {backward_s:.3} s");
    assert!(grads.get(&ql).is_some() && grads.get(&kl).is_some() && grads.get(&vl).is_some());
    let item = |x: &Tensor, i: usize| {
        let n = 256 * 256;
        Tensor::from_vec(x.to_vec().unwrap()[i * n..(i + 1) * n].to_vec(), &[1, 256, 256]).unwrap()
    };
    let want = naive(&item(&q, 77), &item(&k, 77), &item(&v, 77));
    let got = item(out.value(), 77).to_vec().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-4, "{g} vs {w}");
    }
}
