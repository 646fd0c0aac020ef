mod common;
use common::*;
use ddpm_cuda::ops::upsample::upsample_nearest2x;
use ddpm_cuda::Var;

#[test]
fn upsample_forward_matches_naive() {
    let (n, c, h, w) = (2, 3, 4, 5);
    let x = rand_tensor(&[n, c, h, w], 1);
    let y = upsample_nearest2x(&Var::constant(x.clone())).unwrap();
    assert_eq!(y.shape(), &[n, c, 2 * h, 2 * w]);
    let (xv, yv) = (x.to_vec().unwrap(), y.value().to_vec().unwrap());
    for p in 0..n * c {
        for oh in 0..2 * h {
            for ow in 0..2 * w {
                assert_eq!(yv[(p * 2 * h + oh) * 2 * w + ow], xv[(p * h + oh / 2) * w + ow / 2]);
            }
        }
    }
}

#[test]
fn upsample_backward_sums_each_block() {
    let x = rand_tensor(&[3, 2, 3, 5], 2);
    check_grads("upsample", |v| upsample_nearest2x(&v[0]), &[x], 1e-2, 1e-3, 90);
    // Closed form: with an all-ones output gradient every input gets exactly 4.
    let tape = ddpm_cuda::Tape::new();
    let xv = tape.leaf(rand_tensor(&[2, 1, 3, 3], 3));
    let y = upsample_nearest2x(&xv).unwrap();
    let g = tape.backward_with(&y, ddpm_cuda::Tensor::ones(y.shape(), &ddpm_cuda::Device::Cpu).unwrap()).unwrap();
    assert!(g.get(&xv).unwrap().to_vec().unwrap().iter().all(|&v| v == 4.0));
}

#[test]
fn upsample_rejects_non_4d() {
    assert!(upsample_nearest2x(&Var::constant(rand_tensor(&[2, 3, 4], 1))).is_err());
}
