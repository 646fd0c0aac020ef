mod common;
use common::*;
use ddpm_cuda::ops::conv2d::{self, conv2d, Conv2dParams, Padding};
use ddpm_cuda::{Error, Tape, Tensor, Var};

/// Direct convolution in f64, written from the definition: y[n,o,i,j] = b[o] + Σ_{c,a,e} w[o,c,a,e] ·
/// x[n, c, i·s + a − top, j·s + e − left] (zero outside the image).
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> (Vec<f32>, [usize; 4]) {
    let (n, cin, h, wd) = x.dims4("naive").unwrap();
    let (cout, _, kh, kw) = w.dims4("naive").unwrap();
    let pd = p.padding;
    let ho = (h + pd.top + pd.bottom - kh) / p.stride + 1;
    let wo = (wd + pd.left + pd.right - kw) / p.stride + 1;
    let (xv, wv) = (x.to_vec().unwrap(), w.to_vec().unwrap());
    let bv = b.map(|b| b.to_vec().unwrap());
    let mut y = vec![0.0f32; n * cout * ho * wo];
    for ni in 0..n {
        for o in 0..cout {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[o] as f64);
                    for c in 0..cin {
                        for a in 0..kh {
                            for e in 0..kw {
                                let yy = (i * p.stride + a) as isize - pd.top as isize;
                                let xx = (j * p.stride + e) as isize - pd.left as isize;
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= wd as isize {
                                    continue;
                                }
                                let xval = xv[((ni * cin + c) * h + yy as usize) * wd + xx as usize];
                                acc += wv[((o * cin + c) * kh + a) * kw + e] as f64 * xval as f64;
                            }
                        }
                    }
                    y[((ni * cout + o) * ho + i) * wo + j] = acc as f32;
                }
            }
        }
    }
    (y, [n, cout, ho, wo])
}

fn pad(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding { top, bottom, left, right }
}

fn params(stride: usize, padding: Padding) -> Conv2dParams {
    Conv2dParams { stride, padding }
}

/// (x shape, w shape, params, with bias): the configurations the forward and backward tests cover.
fn cases() -> Vec<([usize; 4], [usize; 4], Conv2dParams, bool)> {
    vec![
        ([1, 2, 7, 5], [3, 2, 3, 3], Conv2dParams::same(3), true), // odd non-square input, same padding
        ([2, 3, 7, 5], [4, 3, 3, 3], params(1, pad(0, 0, 0, 0)), false), // valid conv, batch 2
        ([3, 4, 6, 5], [5, 4, 1, 1], params(1, pad(0, 0, 0, 0)), true), // 1×1: the no-im2col path
        ([2, 3, 5, 6], [2, 3, 1, 1], Conv2dParams::same(1), false), // same(1) is also pointwise
        ([2, 3, 7, 6], [2, 3, 2, 3], params(1, pad(1, 0, 1, 2)), true), // non-square kernel, odd padding
        ([2, 2, 7, 5], [3, 2, 3, 3], params(2, pad(1, 1, 1, 1)), true), // stride 2, symmetric padding
        ([2, 3, 8, 8], [4, 3, 3, 3], Conv2dParams::tf_same_down(), true), // DDPM downsample, even size
        ([1, 3, 7, 9], [2, 3, 3, 3], Conv2dParams::tf_same_down(), false), // DDPM downsample, odd sizes
        ([2, 2, 6, 7], [3, 2, 2, 3], params(3, pad(0, 2, 1, 0)), true), // stride 3, asymmetric padding
        ([1, 1, 3, 3], [1, 1, 3, 3], params(1, pad(0, 0, 0, 0)), true), // kernel = input: 1×1 output
        ([9, 2, 4, 4], [3, 2, 3, 3], Conv2dParams::same(3), true), // batch not a multiple of the threads
    ]
}

fn inputs(xs: [usize; 4], ws: [usize; 4], bias: bool, seed: u64) -> Vec<Tensor> {
    let mut t = vec![rand_tensor(&xs, seed), rand_tensor(&ws, seed + 1)];
    if bias {
        t.push(rand_tensor(&[ws[0]], seed + 2));
    }
    t
}

fn run(v: &[Var], p: Conv2dParams) -> ddpm_cuda::Result<Var> {
    conv2d(&v[0], &v[1], v.get(2), p)
}

#[test]
fn forward_matches_naive_direct_convolution() {
    for (i, (xs, ws, p, bias)) in cases().into_iter().enumerate() {
        let t = inputs(xs, ws, bias, 10 * i as u64);
        let y = conv2d::forward(&t[0], &t[1], t.get(2), p).unwrap();
        let (want, shape) = naive_conv(&t[0], &t[1], t.get(2), p);
        assert_eq!(y.shape(), shape, "case {i}: output shape");
        let got = y.to_vec().unwrap();
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "case {i} {xs:?} {ws:?} {p:?}: max error {err}");
    }
}

#[test]
fn output_sizes_follow_the_formula() {
    let w = rand_tensor(&[2, 1, 3, 3], 1);
    let size = |h: usize, wd: usize, p: Conv2dParams| {
        let y = conv2d::forward(&rand_tensor(&[1, 1, h, wd], 2), &w, None, p).unwrap();
        (y.shape()[2], y.shape()[3])
    };
    assert_eq!(size(32, 32, Conv2dParams::same(3)), (32, 32));
    assert_eq!(size(32, 32, Conv2dParams::tf_same_down()), (16, 16));
    // Odd sizes: (7 + 1 − 3)/2 + 1 = 3 and (5 + 1 − 3)/2 + 1 = 2 (the fixed padding is TF's SAME only for even sizes).
    assert_eq!(size(7, 5, Conv2dParams::tf_same_down()), (3, 2));
    assert_eq!(size(5, 5, params(2, pad(1, 1, 1, 1))), (3, 3));
}

#[test]
fn large_batch_matches_naive_on_a_unet_like_shape() {
    // Big enough for the per-thread GEMM split and the reused column buffer to matter.
    let (x, w, b) = (rand_tensor(&[4, 16, 12, 12], 7), rand_tensor(&[8, 16, 3, 3], 8), rand_tensor(&[8], 9));
    for p in [Conv2dParams::same(3), Conv2dParams::tf_same_down()] {
        let y = conv2d::forward(&x, &w, Some(&b), p).unwrap().to_vec().unwrap();
        let (want, _) = naive_conv(&x, &w, Some(&b), p);
        let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-4, "{p:?}: max error {err}");
    }
}

#[test]
fn backward_matches_finite_differences() {
    for (i, (xs, ws, p, bias)) in cases().into_iter().enumerate() {
        let t = inputs(xs, ws, bias, 100 + i as u64);
        check_grads(&format!("conv2d case {i} {xs:?} {ws:?}"), |v| run(v, p), &t, 1e-2, 2e-3, 60);
    }
}

#[test]
fn backward_skips_gradients_not_needed() {
    let (x, w, b) = (rand_tensor(&[2, 3, 5, 5], 1), rand_tensor(&[4, 3, 3, 3], 2), rand_tensor(&[4], 3));
    let p = Conv2dParams::same(3);
    let gy = rand_tensor(&[2, 4, 5, 5], 4);
    let all = conv2d::backward(&x, &w, &gy, p, [true, true, true]).unwrap();
    let only_w = conv2d::backward(&x, &w, &gy, p, [false, true, false]).unwrap();
    assert!(only_w.dx.is_none() && only_w.db.is_none());
    let dw_all = all.dw.unwrap().to_vec().unwrap();
    assert_eq!(only_w.dw.unwrap().to_vec().unwrap(), dw_all);
    let only_x = conv2d::backward(&x, &w, &gy, p, [true, false, false]).unwrap();
    assert!(only_x.dw.is_none() && only_x.db.is_none());
    assert_eq!(only_x.dx.unwrap().to_vec().unwrap(), all.dx.unwrap().to_vec().unwrap());

    // A constant input (the image fed to the first conv) gets no gradient; the weight and bias still do.
    let tape = Tape::new();
    let (wv, bv) = (tape.leaf(w), tape.leaf(b));
    let xv = Var::constant(x);
    let y = conv2d(&xv, &wv, Some(&bv), p).unwrap();
    let grads = tape.backward_with(&y, gy).unwrap();
    assert!(grads.get(&xv).is_none());
    assert_eq!(grads.get(&wv).unwrap().to_vec().unwrap(), dw_all);
    assert_eq!(grads.get(&bv).unwrap().to_vec().unwrap(), all.db.unwrap().to_vec().unwrap());
}

fn expect_shape_error(r: ddpm_cuda::Result<Tensor>, what: &str) {
    match r {
        Err(Error::Shape { .. }) => {}
        Err(e) => panic!("{what}: expected a shape error, got {e}"),
        Ok(t) => panic!("{what}: expected an error, got a tensor {:?}", t.shape()),
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let x = rand_tensor(&[1, 3, 5, 5], 1);
    let w = rand_tensor(&[4, 3, 3, 3], 2);
    let p = Conv2dParams::same(3);
    let f = conv2d::forward;
    expect_shape_error(f(&x, &rand_tensor(&[4, 2, 3, 3], 3), None, p), "channel mismatch");
    expect_shape_error(f(&x, &w, Some(&rand_tensor(&[5], 4)), p), "bias length mismatch");
    expect_shape_error(f(&x, &w, Some(&rand_tensor(&[4, 1], 4)), p), "2-D bias");
    expect_shape_error(f(&rand_tensor(&[3, 5, 5], 5), &w, None, p), "3-D input");
    expect_shape_error(f(&x, &rand_tensor(&[4, 3, 3], 6), None, p), "3-D weight");
    let valid = params(1, pad(0, 0, 0, 0));
    expect_shape_error(f(&x, &rand_tensor(&[4, 3, 6, 3], 7), None, valid), "kernel taller than input");
    expect_shape_error(f(&x, &rand_tensor(&[4, 3, 3, 8], 7), None, Conv2dParams::same(3)), "kernel wider");
    expect_shape_error(f(&x, &w, None, params(0, pad(1, 1, 1, 1))), "stride 0");
    // A kernel that only fits thanks to the padding is fine.
    assert!(f(&x, &rand_tensor(&[4, 3, 6, 6], 8), None, params(1, pad(1, 0, 1, 0))).is_ok());
    // The var-level op reports the same errors.
    let bad = conv2d(&Var::constant(x.clone()), &Var::constant(rand_tensor(&[4, 2, 3, 3], 3)), None, p);
    assert!(matches!(bad, Err(Error::Shape { .. })));
    // A wrong output gradient shape in the backward is an error too.
    let gy = rand_tensor(&[1, 4, 4, 5], 9);
    assert!(matches!(conv2d::backward(&x, &w, &gy, p, [true; 3]), Err(Error::Shape { .. })));
}

/// The fused op's operands in a fixed order: x, w, then bias, add_nc [N, Cout] and the residual as `mask` (bits 0,
/// 1, 2) passes them.
fn fused_inputs(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, mask: usize, seed: u64) -> Vec<Tensor> {
    let y_shape = conv2d::forward(&rand_tensor(&xs, 0), &rand_tensor(&ws, 0), None, p).unwrap().shape().to_vec();
    let mut t = vec![rand_tensor(&xs, seed), rand_tensor(&ws, seed + 1)];
    for (bit, shape) in [vec![ws[0]], vec![xs[0], ws[0]], y_shape].into_iter().enumerate() {
        if mask >> bit & 1 == 1 {
            t.push(rand_tensor(&shape, seed + 2 + bit as u64));
        }
    }
    t
}

fn run_fused(v: &[Var], p: Conv2dParams, mask: usize) -> ddpm_cuda::Result<Var> {
    let mut rest = v[2..].iter();
    let mut take = |bit: usize| if mask >> bit & 1 == 1 { rest.next() } else { None };
    let (b, a, r) = (take(0), take(1), take(2));
    conv2d::conv2d_fused(&v[0], &v[1], b, a, r, p)
}

#[test]
fn fused_backward_matches_finite_differences_for_every_operand_combination() {
    // y is linear in each input separately, so central differences are exact up to rounding.
    let shapes = [
        ([2, 3, 5, 4], [4, 3, 3, 3], Conv2dParams::same(3)),
        ([2, 3, 6, 6], [2, 3, 3, 3], Conv2dParams::tf_same_down()),
        ([1, 4, 3, 5], [3, 4, 1, 1], Conv2dParams::same(1)),
    ];
    for (i, (xs, ws, p)) in shapes.into_iter().enumerate() {
        for mask in 0..8 {
            let t = fused_inputs(xs, ws, p, mask, 200 + 10 * i as u64);
            let name = format!("conv2d_fused {xs:?} {ws:?} operands {mask:03b}");
            check_grads(&name, |v| run_fused(v, p, mask), &t, 1e-2, 2e-3, 60);
        }
    }
}

#[test]
fn fused_f32_is_the_unfused_ops_bit_for_bit() {
    // The U-Net's f32 results (and the CPU parity with diffusers) rest on this: conv + b, then + add_nc broadcast,
    // then residual + that, values and gradients.
    let (xs, ws, p) = ([2, 3, 5, 4], [4, 3, 3, 3], Conv2dParams::same(3));
    let t = fused_inputs(xs, ws, p, 7, 300);
    let gy = rand_tensor(&[2, 4, 5, 4], 310);
    let run = |fused: bool| {
        let tape = Tape::new();
        let v: Vec<Var> = t.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = if fused {
            run_fused(&v, p, 7).unwrap()
        } else {
            let h = conv2d(&v[0], &v[1], Some(&v[2]), p).unwrap();
            let a = ddpm_cuda::autograd::reshape(&v[3], &[2, 4, 1, 1]).unwrap();
            let h = ddpm_cuda::ops::elementwise::add(&h, &a).unwrap();
            ddpm_cuda::ops::elementwise::add(&v[4], &h).unwrap()
        };
        let grads = tape.backward_with(&y, gy.clone()).unwrap();
        let mut out = vec![y.value().to_vec().unwrap()];
        out.extend(v.iter().map(|v| grads.get(v).unwrap().to_vec().unwrap()));
        out.into_iter().map(|o| o.into_iter().map(f32::to_bits).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn fused_operand_shapes_are_checked() {
    let x = Var::constant(rand_tensor(&[2, 3, 5, 4], 1));
    let w = Var::constant(rand_tensor(&[4, 3, 3, 3], 2));
    let p = Conv2dParams::same(3);
    let f = |a: Option<&Var>, r: Option<&Var>| conv2d::conv2d_fused(&x, &w, None, a, r, p);
    // add_nc must be [N, Cout] (a [Cout] or [N, Cout, 1, 1] one would broadcast silently), the residual y's shape.
    for bad in [vec![4], vec![2, 4, 1, 1], vec![1, 4], vec![2, 3]] {
        let a = Var::constant(rand_tensor(&bad, 3));
        assert!(matches!(f(Some(&a), None), Err(Error::Shape { .. })), "add_nc {bad:?}");
    }
    for bad in [vec![2, 4, 5, 1], vec![1, 4, 5, 4], vec![2, 4, 4, 5]] {
        let r = Var::constant(rand_tensor(&bad, 4));
        assert!(matches!(f(None, Some(&r)), Err(Error::Shape { .. })), "residual {bad:?}");
    }
    let (a, r) = (Var::constant(rand_tensor(&[2, 4], 5)), Var::constant(rand_tensor(&[2, 4, 5, 4], 6)));
    assert_eq!(f(Some(&a), Some(&r)).unwrap().shape(), [2, 4, 5, 4]);
}
