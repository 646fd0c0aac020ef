//! Per-op selftest cases, forward and backward, at the cifar10 U-Net's shapes (batch 2) plus odd sizes.

use super::{case, input, Case, Shapes};
use crate::autograd::Tape;
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda_gemm::{self, Gemm, GemmImpl};
use crate::backend::Storage;
use crate::ops::conv2d::{self, Conv2dParams, Padding};
use crate::ops::diffusion_step::{q_sample, reverse_step, StepCoefs};
use crate::ops::elementwise::{self, BinaryOp};
use crate::ops::group_norm::{self, Layout};
use crate::ops::pool::{self, Pool2d};
use crate::ops::{attention, concat, dropout, linear, loss, reduce, relu, resize, silu, upsample};
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

/// Batch size of the op cases (keeps the CPU reference quick).
const B: usize = 2;

fn conv_cases(cases: &mut Vec<Case>, shapes: Shapes) {
    let same = Conv2dParams::same;
    let down = Conv2dParams::tf_same_down();
    // (cin, cout, H = W, k, params): every conv of the cifar10 U-Net, then odd sizes and a general padding.
    // Reduced: each family of those convs (3-channel input, 3×3 same, 3×3 stride-2 TF-same, the concat inputs of
    // 1.5× and 2× channels, 1×1 skips, the 3-channel output) at fewer channels and pixels, with partial M, N and K
    // tiles, several tiles per dimension, and weight-gradient reductions both split and not.
    let reduced: Vec<(usize, usize, usize, usize, Conv2dParams)> = vec![
        (3, 32, 16, 3, same(3)),
        (32, 32, 16, 3, same(3)),
        (32, 32, 16, 3, down),
        (32, 80, 8, 3, same(3)),
        (80, 80, 8, 3, down),
        (160, 80, 4, 3, same(3)),
        (120, 80, 8, 3, same(3)),
        (96, 32, 16, 3, same(3)),
        (32, 3, 16, 3, same(3)),
        (32, 80, 8, 1, same(1)),
        (160, 80, 4, 1, same(1)),
        (96, 32, 16, 1, same(1)),
    ];
    let full: Vec<(usize, usize, usize, usize, Conv2dParams)> = vec![
        (3, 128, 32, 3, same(3)),
        (128, 128, 32, 3, same(3)),
        (128, 128, 32, 3, down),
        (128, 256, 16, 3, same(3)),
        (256, 256, 16, 3, same(3)),
        (256, 256, 16, 3, down),
        (256, 256, 8, 3, same(3)),
        (256, 256, 8, 3, down),
        (256, 256, 4, 3, same(3)),
        (512, 256, 4, 3, same(3)),
        (512, 256, 8, 3, same(3)),
        (512, 256, 16, 3, same(3)),
        (384, 256, 16, 3, same(3)),
        (256, 256, 32, 3, same(3)),
        (384, 128, 32, 3, same(3)),
        (256, 128, 32, 3, same(3)),
        (128, 3, 32, 3, same(3)),
        (128, 256, 16, 1, same(1)),
        (256, 256, 16, 1, same(1)),
        (512, 256, 4, 1, same(1)),
        (512, 256, 8, 1, same(1)),
        (512, 256, 16, 1, same(1)),
        (384, 256, 16, 1, same(1)),
        (384, 128, 32, 1, same(1)),
        (256, 128, 32, 1, same(1)),
    ];
    let unet = if shapes == Shapes::Full { full } else { reduced };
    for (cin, cout, hw, k, p) in unet {
        push_conv(cases, [B, cin, hw, hw], [cout, cin, k, k], p);
    }
    push_conv(cases, [3, 6, 5, 7], [5, 6, 3, 3], same(3));
    push_conv(cases, [3, 6, 5, 7], [5, 6, 3, 3], down);
    let odd = Conv2dParams { stride: 3, padding: Padding { top: 2, bottom: 1, left: 0, right: 3 } };
    push_conv(cases, [3, 6, 11, 9], [70, 6, 5, 4], odd);
}

fn push_conv(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    let shape = format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride);
    cases.push(case(
        "conv2d fwd",
        shape.clone(),
        1e-4,
        Box::new(move |d| {
            let (x, w, b) = (input(&xs, 1, d)?, input(&ws, 2, d)?, input(&[ws[0]], 3, d)?);
            Ok(vec![conv2d::forward(&x, &w, Some(&b), p)?])
        }),
    ));
    cases.push(case(
        "conv2d bwd (dx dw db)",
        shape,
        1e-4,
        Box::new(move |d| {
            let (x, w) = (input(&xs, 1, d)?, input(&ws, 2, d)?);
            let y_shape = conv2d::forward(&x, &w, None, p)?.shape().to_vec();
            let gy = input(&y_shape, 4, d)?;
            let g = conv2d::backward(&x, &w, &gy, p, [true; 3])?;
            Ok(vec![g.dx.expect("dx"), g.dw.expect("dw"), g.db.expect("db")])
        }),
    ));
}

fn norm_cases(cases: &mut Vec<Case>, sizes: Shapes) {
    // (channels, H = W) with 32 groups: the U-Net's, or (reduced) groups of 2–4 channels over 4–16 pixels.
    let unet: &[(usize, usize)] = match sizes {
        Shapes::Full => {
            &[(128, 32), (256, 32), (384, 32), (256, 16), (384, 16), (512, 16), (256, 8), (512, 8), (256, 4), (512, 4)]
        }
        Shapes::Reduced => &[(64, 16), (96, 8), (128, 4)],
    };
    let mut shapes: Vec<(Vec<usize>, usize)> = unet.iter().map(|&(c, hw)| (vec![B, c, hw, hw], 32)).collect();
    shapes.push((vec![3, 6, 5, 7], 3));
    for (xs, groups) in shapes {
        for silu in [false, true] {
            let op = if silu { "group_norm_silu" } else { "group_norm" };
            let xs2 = xs.clone();
            cases.push(case(
                format!("{op} fwd+bwd"),
                format!("{xs:?} g{groups}"),
                1e-4,
                Box::new(move |d| {
                    let c = xs2[1];
                    // Offset data (mean 0.5) checks the two-pass variance; γ around 1, β around 0.
                    let x = elementwise::add_scalar_tensor(&input(&xs2, 1, d)?, 0.5)?;
                    let gamma = elementwise::add_scalar_tensor(&input(&[c], 2, d)?.scale(0.5)?, 1.0)?;
                    let beta = input(&[c], 3, d)?.scale(0.5)?;
                    let l = Layout::new(&xs2, &[c], &[c], groups)?;
                    let (y, stats) = group_norm::forward(&x, &gamma, &beta, l, 1e-6, silu)?;
                    let gy = input(&xs2, 4, d)?;
                    let (dx, dg, db) = group_norm::backward(&x, &gamma, &beta, &stats, &gy, l, silu, &[true; 3])?;
                    Ok(vec![y, stats.mean, stats.rstd, dx.expect("dx"), dg.expect("dgamma"), db.expect("dbeta")])
                }),
            ));
        }
    }
}

fn gemm_cases(cases: &mut Vec<Case>) {
    for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
        let name = if imp == GemmImpl::Kernel { "kernel" } else { "auto" };
        for (m, n, k, ta, tb, batch) in [
            (70, 50, 33, false, false, 1),
            (70, 50, 33, true, false, 1),
            (70, 50, 33, false, true, 2),
            (70, 50, 33, true, true, 3),
            (256, 256, 256, true, false, 2),
        ] {
            cases.push(case(
                format!("gemm ({name})"),
                format!("{m}x{n}x{k} t{}{} b{batch}", u8::from(ta), u8::from(tb)),
                1e-4,
                Box::new(move |d| {
                    let g = Gemm::new(m, n, k, ta, tb).batched(batch).accumulate();
                    let [la, lb, lc] = g.lens();
                    let (a, b, c) = (input(&[la], 1, d)?, input(&[lb], 2, d)?, input(&[lc], 3, d)?);
                    Ok(vec![run_gemm(&g, &a, &b, &c, imp)?])
                }),
            ));
        }
    }
}

/// `g` on either device: `cpu::gemm` per batch item, or the device GEMM with the chosen implementation.
fn run_gemm(g: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor, imp: GemmImpl) -> Result<Tensor> {
    match (a.storage(), b.storage(), c.storage()) {
        (Storage::Cpu(av), Storage::Cpu(bv), Storage::Cpu(cv)) => {
            let mut out = cv.clone();
            for i in 0..g.batch {
                let am = Mat::new(&av[i * g.stride_a..], if g.ta { g.k } else { g.m }, if g.ta { g.m } else { g.k });
                let bm = Mat::new(&bv[i * g.stride_b..], if g.tb { g.n } else { g.k }, if g.tb { g.k } else { g.n });
                let (am, bm) = (if g.ta { am.t() } else { am }, if g.tb { bm.t() } else { bm });
                cpu::gemm(&mut out[i * g.stride_c..], am, bm, g.beta != 0.0, Threads::All);
            }
            Tensor::from_vec(out, c.shape())
        }
        (Storage::Cuda(av), Storage::Cuda(bv), Storage::Cuda(cv)) => {
            let mut out = cv.try_clone()?;
            cuda_gemm::gemm(av.backend(), g, &av.buf, &bv.buf, &mut out.buf, imp)?;
            Tensor::from_storage(Storage::Cuda(out), c.shape())
        }
        _ => Err(Error::msg("gemm case: mixed devices")),
    }
}

fn linear_attention_cases(cases: &mut Vec<Case>, shapes: Shapes) {
    for (n, fin, fout) in [(B, 128, 512), (B, 512, 512), (B, 512, 256), (3, 7, 5)] {
        for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
            let name = if imp == GemmImpl::Kernel { "linear fwd (kernel)" } else { "linear fwd" };
            cases.push(case(
                name,
                format!("[{n}, {fin}]*{fout}"),
                1e-4,
                Box::new(move |d| {
                    let (x, w, b) = (input(&[n, fin], 1, d)?, input(&[fout, fin], 2, d)?, input(&[fout], 3, d)?);
                    Ok(vec![linear::forward_with(&x, &w, Some(&b), imp)?])
                }),
            ));
        }
        cases.push(case(
            "linear bwd (dx dw db)",
            format!("[{n}, {fin}]*{fout}"),
            1e-4,
            Box::new(move |d| {
                let (x, w, gy) = (input(&[n, fin], 1, d)?, input(&[fout, fin], 2, d)?, input(&[n, fout], 4, d)?);
                let (dx, dw, db) = linear::backward(&x, &w, &gy, [true; 3])?;
                Ok(vec![dx.expect("dx"), dw.expect("dw"), db.expect("db")])
            }),
        ));
    }
    // [batch, channels, tokens]: the 16×16 level's 256 tokens (at 256 channels, or 64 when reduced), others.
    let attention: &[(usize, usize, usize)] = match shapes {
        Shapes::Full => &[(B, 256, 256), (B, 64, 196), (3, 8, 10)],
        Shapes::Reduced => &[(B, 64, 256), (B, 24, 70), (3, 8, 10)],
    };
    for &(b, c, t) in attention {
        cases.push(case(
            "attention fwd+bwd",
            format!("[{b}, {c}, {t}]"),
            1e-4,
            Box::new(move |d| {
                let s = [b, c, t];
                // Scaled up so the softmax is far from uniform.
                let (q, k, v) = (input(&s, 1, d)?.scale(3.0)?, input(&s, 2, d)?.scale(3.0)?, input(&s, 3, d)?);
                let (o, p) = attention::forward(&q, &k, &v)?;
                let g = input(&s, 4, d)?;
                let (dq, dk, dv) = attention::backward(&q, &k, &v, &p, &g, [true; 3])?;
                Ok(vec![o, p, dq.expect("dq"), dk.expect("dk"), dv.expect("dv")])
            }),
        ));
    }
}

fn elementwise_cases(cases: &mut Vec<Case>) {
    let big = vec![B, 256, 16, 16];
    let bias = vec![B, 256, 1, 1];
    for (op, a, b) in [
        (BinaryOp::Add, big.clone(), big.clone()),
        (BinaryOp::Mul, big.clone(), big.clone()),
        (BinaryOp::Sub, big.clone(), big.clone()),
        (BinaryOp::Add, big.clone(), bias.clone()),
        (BinaryOp::Sub, bias.clone(), big.clone()),
        (BinaryOp::Mul, big.clone(), vec![256, 1, 1]),
        (BinaryOp::Add, vec![3, 6, 5, 7], vec![1]),
    ] {
        cases.push(case(
            format!("{op:?} fwd").to_lowercase(),
            format!("{a:?}∘{b:?}"),
            1e-5,
            Box::new(move |d| Ok(vec![elementwise::forward(op, &input(&a, 1, d)?, &input(&b, 2, d)?)?])),
        ));
    }
    for target in [vec![1, 256, 1, 1], bias.clone(), vec![256, 1, 1]] {
        let g = big.clone();
        cases.push(case(
            "reduce_to_shape (bias grad)",
            format!("{g:?}→{target:?}"),
            1e-5,
            Box::new(move |d| Ok(vec![elementwise::reduce_to_shape(&input(&g, 1, d)?, &target)?])),
        ));
    }
    let s = big.clone();
    cases.push(case(
        "scale, add_scalar",
        format!("{s:?}"),
        1e-6,
        Box::new(move |d| {
            let x = input(&s, 1, d)?;
            Ok(vec![x.scale(-0.7)?, elementwise::add_scalar_tensor(&x, 0.25)?])
        }),
    ));
    for s in [vec![B, 128, 32, 32], vec![3, 6, 5, 7]] {
        cases.push(case(
            "silu fwd+bwd",
            format!("{s:?}"),
            1e-5,
            Box::new(move |d| {
                let (x, g) = (input(&s, 1, d)?.scale(4.0)?, input(&s, 2, d)?);
                Ok(vec![silu::forward(&x)?, silu::backward(&x, &g)?])
            }),
        ));
    }
    cases.push(case(
        "concat fwd + split bwd",
        "[2, 256, 16, 16]|[2, 128, 16, 16]",
        0.0,
        Box::new(|d| {
            let (a, b) = (input(&[B, 256, 16, 16], 1, d)?, input(&[B, 128, 16, 16], 2, d)?);
            let y = concat::forward(&[a.clone(), b.clone()])?;
            let g = input(y.shape(), 3, d)?;
            let parts = concat::split(&g, &[a.shape().to_vec(), b.shape().to_vec()], &[true, true])?;
            let mut out = vec![y];
            out.extend(parts.into_iter().map(|p| p.expect("part")));
            Ok(out)
        }),
    ));
    cases.push(case(
        "upsample2x fwd+bwd",
        "[2, 256, 8, 8]",
        1e-6,
        Box::new(|d| {
            let x = input(&[B, 256, 8, 8], 1, d)?;
            let y = upsample::forward(&x)?;
            let g = input(y.shape(), 2, d)?;
            Ok(vec![y, upsample::backward(&g, x.shape())?])
        }),
    ));
    cases.push(case(
        "dropout fwd+bwd",
        "[2, 256, 16, 16] p0.1",
        1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(11, 5);
            let (x, g) = (input(&[B, 256, 16, 16], 1, d)?, input(&[B, 256, 16, 16], 2, d)?);
            Ok(vec![dropout::forward(&x, 0.1, draw)?, dropout::backward(&g, 0.1, draw)?])
        }),
    ));
}

fn misc_cases(cases: &mut Vec<Case>) {
    let s = vec![B, 3, 32, 32];
    let s1 = s.clone();
    cases.push(case(
        "q_sample",
        format!("{s:?}"),
        1e-6,
        Box::new(move |d| {
            let (a, b) = (vec![0.9, 0.3], vec![0.435_89, 0.953_94]);
            Ok(vec![q_sample(&input(&s1, 1, d)?, &input(&s1, 2, d)?, &a, &b)?])
        }),
    ));
    let s2 = s.clone();
    cases.push(case(
        "reverse_step",
        format!("{s:?}"),
        1e-5,
        Box::new(move |d| {
            let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.1, sigma: 0.2 };
            let (x, e, z) = (input(&s2, 1, d)?, input(&s2, 2, d)?, input(&s2, 3, d)?);
            Ok(vec![reverse_step(&x, &e, Some(&z), c)?, reverse_step(&x, &e, None, StepCoefs { sigma: 0.0, ..c })?])
        }),
    ));
    let s3 = s.clone();
    cases.push(case(
        "mse fwd+bwd",
        format!("{s:?}"),
        1e-5,
        Box::new(move |d| {
            let (p, t) = (input(&s3, 1, d)?, input(&s3, 2, d)?);
            let l = loss::forward(&p, &t)?;
            let g = Tensor::full(&[], 0.7, d)?;
            Ok(vec![l, loss::backward(&p, &t, &g)?])
        }),
    ));
    let s4 = vec![B, 128, 32, 32];
    cases.push(case(
        "sum, mean fwd+bwd",
        format!("{s4:?}"),
        1e-5,
        Box::new(move |d| {
            let tape = Tape::new();
            let x = tape.leaf(elementwise::add_scalar_tensor(&input(&s4, 1, d)?, 0.1)?);
            let (s, m) = (reduce::sum(&x)?, reduce::mean(&x)?);
            let total = elementwise::add(&s, &elementwise::scale(&m, 3.0)?)?;
            let grads = tape.backward(&total)?;
            Ok(vec![s.value().clone(), m.value().clone(), grads.get(&x).expect("dx").clone()])
        }),
    ));
    cases.push(case(
        "philox normal",
        "[2, 3, 32, 32]",
        1e-5,
        Box::new(|d| Ok(vec![Philox::from_state(7, 3).normal_on(&[B, 3, 32, 32], d)?])),
    ));
}

/// The inference-only ops of the FID path (pytorch-fid's Inception): max / average pooling (3×3 windows as the
/// Inception blocks use them, plus an odd case), global average pooling, the bilinear resize to 299×299 (and a
/// shrinking odd one), ReLU.
fn fid_cases(cases: &mut Vec<Case>) {
    for (xs, p) in [
        (vec![B, 64, 37, 37], Pool2d::new(3, 2, 0)),
        (vec![B, 192, 17, 17], Pool2d::new(3, 1, 1)),
        (vec![3, 5, 9, 11], Pool2d::new(4, 3, 2)),
    ] {
        let k = format!("{xs:?} k{} s{} p{}", p.kernel, p.stride, p.padding);
        let xs2 = xs.clone();
        cases.push(case(
            "max_pool2d fwd",
            k.clone(),
            0.0,
            Box::new(move |d| Ok(vec![pool::max_pool2d_forward(&input(&xs2, 1, d)?, p)?])),
        ));
        cases.push(case(
            "avg_pool2d fwd (pad in/out)",
            k,
            1e-6,
            Box::new(move |d| {
                let x = input(&xs, 1, d)?;
                Ok(vec![pool::avg_pool2d_forward(&x, p, true)?, pool::avg_pool2d_forward(&x, p, false)?])
            }),
        ));
    }
    for xs in [vec![B, 2048, 8, 8], vec![3, 5, 9, 11]] {
        cases.push(case(
            "global_avg_pool fwd",
            format!("{xs:?}"),
            1e-6,
            Box::new(move |d| Ok(vec![pool::global_avg_pool_forward(&input(&xs, 1, d)?)?])),
        ));
    }
    for (xs, oh, ow) in [(vec![B, 3, 32, 32], 299, 299), (vec![3, 2, 7, 5], 11, 4)] {
        cases.push(case(
            "resize_bilinear fwd",
            format!("{xs:?}→{oh}x{ow}"),
            1e-6,
            Box::new(move |d| Ok(vec![resize::resize_bilinear_forward(&input(&xs, 1, d)?, oh, ow)?])),
        ));
    }
    for xs in [vec![B, 192, 35, 35], vec![3, 5, 9, 11]] {
        cases.push(case(
            "relu fwd",
            format!("{xs:?}"),
            0.0,
            Box::new(move |d| Ok(vec![relu::relu_forward(&input(&xs, 1, d)?)?])),
        ));
    }
}

pub(super) fn cases(shapes: Shapes) -> Vec<Case> {
    let mut cases = Vec::new();
    conv_cases(&mut cases, shapes);
    norm_cases(&mut cases, shapes);
    gemm_cases(&mut cases);
    linear_attention_cases(&mut cases, shapes);
    elementwise_cases(&mut cases);
    misc_cases(&mut cases);
    fid_cases(&mut cases);
    cases
}
