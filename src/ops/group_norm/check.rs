//! group_norm (and group_norm + SiLU) selftest cases at the U-Net's (or reduced) shapes.

use super::Layout;
use crate::ops::{elementwise, group_norm};
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::{DType, Device, Result, Tensor};

/// The benchmark rows (`ddpm-cuda bench kernels`): GroupNorm + SiLU forward and backward with 32 groups at the
/// U-Net's (channels, H = W).
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    for (c, hw) in [(128, 32), (256, 16), (512, 16), (384, 32), (256, 8)] {
        let s = [batch, c, hw, hw];
        let n = batch * c * hw * hw;
        let l = move || Layout::new(&s, &[c], &[c], 32);
        let inputs = move |d: &Device| -> Result<[Tensor; 4]> {
            Ok([rand(&s, 1, d)?, rand(&s, 2, d)?, Tensor::ones(&[c], d)?, Tensor::zeros(&[c], d)?])
        };
        rows.push(row("group_norm_silu fwd", format!("{s:?}"), Work::f32s(n, 2), move |d| {
            let ([x, _, gamma, beta], l) = (inputs(d)?, l()?);
            Ok(Box::new(move || group_norm::forward(&x, &gamma, &beta, l, 1e-6, true).map(drop)))
        }));
        rows.push(row("group_norm_silu bwd", format!("{s:?}"), Work::f32s(n, 3), move |d| {
            let ([x, gy, gamma, beta], l) = (inputs(d)?, l()?);
            let (_, stats) = group_norm::forward(&x, &gamma, &beta, l, 1e-6, true)?;
            Ok(Box::new(move || group_norm::backward(&x, &gamma, &beta, &stats, &gy, l, true, &[true; 3]).map(drop)))
        }));
    }
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, shapes: Shapes) {
    // (channels, H = W) with 32 groups: the U-Net's, or (reduced) groups of 2–4 channels over 4–16 pixels.
    let unet: &[(usize, usize)] = match shapes {
        Shapes::Full => {
            &[(128, 32), (256, 32), (384, 32), (256, 16), (384, 16), (512, 16), (256, 8), (512, 8), (256, 4), (512, 4)]
        }
        Shapes::Reduced => &[(64, 16), (96, 8), (128, 4)],
    };
    let mut shapes: Vec<(Vec<usize>, usize)> = unet.iter().map(|&(c, hw)| (vec![B, c, hw, hw], 32)).collect();
    // bf16 x, y, gy, dx (f32 statistics, γ, β, dγ, dβ): each bf16 output rounded once on top of the f32 case's 1e-4;
    // the statistics and dγ, dβ are f32 sums of the same (bf16-exact) inputs, within the f32 case's 1e-4.
    let bf16_shapes: Vec<(Vec<usize>, usize)> = vec![(vec![B, 64, 16, 16], 32), (vec![B, 96, 8, 8], 32), (vec![3, 6, 5, 7], 3)];
    for (xs, groups) in bf16_shapes {
        for silu in [false, true] {
            let op = if silu { "group_norm_silu" } else { "group_norm" };
            let xs2 = xs.clone();
            cases.push(case(
                format!("{op} fwd+bwd bf16"),
                format!("{xs:?} g{groups}"),
                BF16_ROUND + 1e-4,
                Box::new(move |d| {
                    let c = xs2[1];
                    let x = elementwise::add_scalar_tensor(&input_bf16(&xs2, 1, d)?, 0.5)?;
                    let gamma = elementwise::add_scalar_tensor(&input(&[c], 2, d)?.scale(0.5)?, 1.0)?;
                    let beta = input(&[c], 3, d)?.scale(0.5)?;
                    let l = Layout::new(&xs2, &[c], &[c], groups)?;
                    // The offset of 0.5 was added in bf16 on the device: the CPU sees the same rounded values.
                    let x = if d.is_cpu() { crate::selftest::round_bf16(&x)? } else { x };
                    let (y, stats) = group_norm::forward(&x, &gamma, &beta, l, 1e-6, silu)?;
                    let gy = input_bf16(&xs2, 4, d)?;
                    let (dx, dg, db) = group_norm::backward(&x, &gamma, &beta, &stats, &gy, l, silu, &[true; 3])?;
                    let (y, dx) = (expect_dtype(y, DType::Bf16)?, expect_dtype(dx.expect("dx"), DType::Bf16)?);
                    Ok(vec![y, stats.mean, stats.rstd, dx, dg.expect("dgamma"), db.expect("dbeta")])
                }),
            ));
        }
    }
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
