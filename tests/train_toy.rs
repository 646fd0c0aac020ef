//! Issue 2's integration test: a small conv net trained through the tape and Adam on a fixed toy problem drives its
//! loss down by an asserted factor.
mod common;
use common::*;
use ddpm_cuda::ops::conv2d::{conv2d, Conv2dParams};
use ddpm_cuda::ops::group_norm::group_norm;
use ddpm_cuda::ops::loss::mse;
use ddpm_cuda::ops::silu::silu;
use ddpm_cuda::optim::{Adam, AdamConfig};
use ddpm_cuda::{Tape, Tensor, Var};

/// Target: a fixed smoothing of the input (a 3×3 box blur of channel 0 plus a shifted copy of channel 1).
fn target_of(x: &Tensor) -> Tensor {
    let (n, _, h, w) = x.dims4("toy").unwrap();
    let v = x.to_vec().unwrap();
    let mut out = vec![0.0f32; n * h * w];
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                let mut s = 0.0;
                for di in -1i32..=1 {
                    for dj in -1i32..=1 {
                        let (y, z) = (i as i32 + di, j as i32 + dj);
                        if y >= 0 && z >= 0 && (y as usize) < h && (z as usize) < w {
                            s += v[((b * 2) * h + y as usize) * w + z as usize];
                        }
                    }
                }
                let shifted = if j + 1 < w { v[((b * 2 + 1) * h + i) * w + j + 1] } else { 0.0 };
                out[(b * h + i) * w + j] = s / 9.0 + 0.5 * shifted;
            }
        }
    }
    Tensor::from_vec(out, &[n, 1, h, w]).unwrap()
}

#[test]
fn small_conv_net_learns_a_toy_problem() {
    let x = rand_tensor(&[8, 2, 12, 12], 1);
    let y = target_of(&x);
    let init = |shape: &[usize], seed, scale: f32| rand_tensor(shape, seed).scale(scale).unwrap();
    let mut params = vec![
        init(&[16, 2, 3, 3], 2, 0.3),
        Tensor::zeros(&[16], &ddpm_cuda::Device::Cpu).unwrap(),
        Tensor::ones(&[16], &ddpm_cuda::Device::Cpu).unwrap(),
        Tensor::zeros(&[16], &ddpm_cuda::Device::Cpu).unwrap(),
        init(&[1, 16, 3, 3], 3, 0.1),
        Tensor::zeros(&[1], &ddpm_cuda::Device::Cpu).unwrap(),
    ];
    let mut adam = Adam::new(AdamConfig { lr: 3e-3, ..AdamConfig::default() }, &params).unwrap();
    let same = Conv2dParams::same(3);
    let mut losses = vec![];
    for _ in 0..300 {
        let tape = Tape::new();
        let p: Vec<Var> = params.iter().map(|t| tape.leaf(t.clone())).collect();
        let h = conv2d(&Var::constant(x.clone()), &p[0], Some(&p[1]), same).unwrap();
        let h = silu(&group_norm(&h, &p[2], &p[3], 4, 1e-6).unwrap()).unwrap();
        let out = conv2d(&h, &p[4], Some(&p[5]), same).unwrap();
        let loss = mse(&out, &Var::constant(y.clone())).unwrap();
        losses.push(loss.value().item().unwrap());
        let grads = tape.backward(&loss).unwrap();
        let g: Vec<Tensor> = p.iter().map(|v| grads.get(v).unwrap().clone()).collect();
        drop(p);
        adam.step(&mut params, &g, 3e-3).unwrap();
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("toy loss {first:.4} → {last:.5}");
    assert!(last < first / 20.0, "loss only went from {first} to {last}");
}
