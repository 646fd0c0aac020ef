//! silu's selftest cases.

use crate::ops::silu;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark rows (`ddpm-cuda bench kernels`): SiLU forward and backward at [B, 256, 16, 16].
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 256, 16, 16];
    let n = batch * 256 * 256;
    rows.push(row("silu fwd", format!("{s:?}"), Work::f32s(n, 2), move |d| {
        let x = rand(&s, 1, d)?;
        Ok(Box::new(move || silu::forward(&x).map(drop)))
    }));
    rows.push(row("silu bwd", format!("{s:?}"), Work::f32s(n, 3), move |d| {
        let (x, gy) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        Ok(Box::new(move || silu::backward(&x, &gy).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
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
    // bf16 storage, f32 maths: one rounding of each output on top of the f32 case's 1e-5.
    for s in [vec![B, 64, 16, 16], vec![3, 6, 5, 7]] {
        cases.push(case(
            "silu fwd+bwd bf16",
            format!("{s:?}"),
            BF16_ROUND + 1e-5,
            Box::new(move |d| {
                let (x, g) = (input_bf16(&s, 1, d)?.scale(4.0)?, input_bf16(&s, 2, d)?);
                let y = expect_dtype(silu::forward(&x)?, DType::Bf16)?;
                Ok(vec![y, expect_dtype(silu::backward(&x, &g)?, DType::Bf16)?])
            }),
        ));
    }
}
