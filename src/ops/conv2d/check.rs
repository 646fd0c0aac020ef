//! conv2d's selftest cases: every conv of the cifar10 U-Net (or its reduced families), odd sizes, a general padding.

use super::{Conv2dParams, Padding};
use crate::ops::conv2d;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, param_bf16, Case, Shapes, B, BF16_ROUND};
use crate::{DType, Device, Result, Tensor};

/// The benchmark rows (`ddpm-cuda bench kernels`): forward, data and weight gradient at a sample of the cifar10
/// U-Net's convs, (cin, cout, H = W, k, params).
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let same = Conv2dParams::same;
    let down = Conv2dParams::tf_same_down();
    let shapes = [
        (3, 128, 32, 3, same(3)),
        (128, 128, 32, 3, same(3)),
        (128, 128, 32, 3, down),
        (256, 256, 16, 3, same(3)),
        (512, 256, 16, 3, same(3)),
        (256, 256, 8, 3, same(3)),
        (512, 256, 4, 3, same(3)),
        (384, 128, 32, 3, same(3)),
        (256, 256, 32, 3, same(3)),
        (128, 3, 32, 3, same(3)),
        (384, 128, 32, 1, same(1)),
        (256, 256, 16, 1, same(1)),
    ];
    for (cin, cout, hw, k, p) in shapes {
        let ho = (hw + p.padding.top + p.padding.bottom - k) / p.stride + 1;
        let flops = Work::Flops(2.0 * (batch * cout * ho * ho * cin * k * k) as f64);
        let shape = format!("{cin}→{cout} {k}x{k}{} @{hw}²", if p.stride == 2 { " s2" } else { "" });
        // x, w, bias and an output gradient of y's shape.
        let inputs = move |d: &Device| -> Result<[Tensor; 4]> {
            Ok([
                rand(&[batch, cin, hw, hw], 1, d)?,
                rand(&[cout, cin, k, k], 2, d)?,
                rand(&[cout], 3, d)?,
                rand(&[batch, cout, ho, ho], 4, d)?,
            ])
        };
        rows.push(row("conv2d fwd", shape.clone(), flops, move |d| {
            let [x, w, b, _] = inputs(d)?;
            Ok(Box::new(move || conv2d::forward(&x, &w, Some(&b), p).map(drop)))
        }));
        for (op, needs) in [("conv2d dgrad", [true, false, false]), ("conv2d wgrad", [false, true, false])] {
            rows.push(row(op, shape.clone(), flops, move |d| {
                let [x, w, _, gy] = inputs(d)?;
                Ok(Box::new(move || conv2d::backward(&x, &w, &gy, p, needs).map(drop)))
            }));
        }
    }
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, shapes: Shapes) {
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
    // bf16 arm, one shape per conv family of the U-Net (3-channel in and out, 3×3 same, stride-2, 1×1 skip).
    let bf16: Vec<([usize; 4], [usize; 4], Conv2dParams)> = match shapes {
        Shapes::Full => vec![
            ([B, 3, 32, 32], [128, 3, 3, 3], same(3)),
            ([B, 128, 32, 32], [128, 128, 3, 3], same(3)),
            ([B, 128, 32, 32], [128, 128, 3, 3], down),
            ([B, 384, 16, 16], [256, 384, 1, 1], same(1)),
            ([B, 128, 32, 32], [3, 128, 3, 3], same(3)),
        ],
        Shapes::Reduced => vec![
            ([B, 3, 16, 16], [32, 3, 3, 3], same(3)),
            ([B, 32, 16, 16], [32, 32, 3, 3], same(3)),
            ([B, 80, 8, 8], [80, 80, 3, 3], down),
            ([B, 96, 16, 16], [32, 96, 1, 1], same(1)),
            ([B, 32, 16, 16], [3, 32, 3, 3], same(3)),
        ],
    };
    for (xs, ws, p) in bf16 {
        push_conv_bf16(cases, xs, ws, p);
    }
}

/// bf16 x and dy, the f32 weight rounded to bf16 by the op (the CPU reference gets the rounded weight): the f32
/// cases' accumulation (1e-4) plus one rounding of y and dx (2⁻⁹); dW and db are f32.
fn push_conv_bf16(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    cases.push(case(
        "conv2d fwd+bwd bf16",
        format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride),
        BF16_ROUND + 1e-4,
        Box::new(move |d| {
            let x = input_bf16(&xs, 1, d)?;
            let w = param_bf16(&input(&ws, 2, &Device::Cpu)?, d)?;
            let b = input(&[ws[0]], 3, d)?;
            let y = expect_dtype(conv2d::forward(&x, &w, Some(&b), p)?, DType::Bf16)?;
            let gy = input_bf16(y.shape(), 4, d)?;
            let g = conv2d::backward(&x, &w, &gy, p, [true; 3])?;
            let dx = expect_dtype(g.dx.expect("dx"), DType::Bf16)?;
            let dw = expect_dtype(g.dw.expect("dw"), DType::F32)?;
            Ok(vec![y, dx, dw, expect_dtype(g.db.expect("db"), DType::F32)?])
        }),
    ));
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
