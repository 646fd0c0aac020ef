//! upsample2x's selftest case.

use crate::ops::upsample;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark rows (`ddpm-cuda bench kernels`): nearest 2× upsampling of [B, 256, 8, 8] and its backward.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let (small, big) = ([batch, 256, 8, 8], [batch, 256, 16, 16]);
    // One small tensor and one 4× larger: 5 small tensors' worth of f32s.
    let work = Work::f32s(batch * 256 * 64, 5);
    rows.push(row("upsample2x fwd", format!("{small:?}"), work, move |d| {
        let x = rand(&small, 1, d)?;
        Ok(Box::new(move || upsample::forward(&x).map(drop)))
    }));
    rows.push(row("upsample2x bwd", format!("{small:?}"), work, move |d| {
        let g = rand(&big, 1, d)?;
        Ok(Box::new(move || upsample::backward(&g, &small).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
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
    // bf16: the forward copies (exact); the backward's 4-term f32 sum is rounded once.
    cases.push(case(
        "upsample2x fwd+bwd bf16",
        "[2, 64, 8, 8]",
        BF16_ROUND + 1e-6,
        Box::new(|d| {
            let x = input_bf16(&[B, 64, 8, 8], 1, d)?;
            let y = expect_dtype(upsample::forward(&x)?, DType::Bf16)?;
            let g = input_bf16(y.shape(), 2, d)?;
            Ok(vec![y, expect_dtype(upsample::backward(&g, x.shape())?, DType::Bf16)?])
        }),
    ));
}
