//! upsample2x's selftest case.

use crate::ops::upsample;
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

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
