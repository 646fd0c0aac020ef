//! group_norm (and group_norm + SiLU) selftest cases at the U-Net's (or reduced) shapes.

use super::Layout;
use crate::ops::{elementwise, group_norm};
use crate::bench::kernels::{rand, row, Row, Work};
use crate::{Device, Result, Tensor};
use crate::selftest::{case, input, Case, Shapes, B};

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
