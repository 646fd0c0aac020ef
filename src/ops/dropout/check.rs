//! dropout's selftest case.

use crate::ops::dropout;
use crate::rng::Philox;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark row (`ddpm-cuda bench kernels`): dropout 0.1 (with its mask drawn in the kernel) at
/// [B, 256, 16, 16].
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 256, 16, 16];
    rows.push(row("dropout fwd", format!("{s:?}"), Work::f32s(batch * 256 * 256, 2), move |d| {
        let x = rand(&s, 1, d)?;
        Ok(Box::new(move || dropout::forward(&x, 0.1, Philox::new(1), 0).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    cases.push(case(
        "dropout fwd+bwd",
        "[2, 256, 16, 16] p0.1",
        1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(11, 5);
            let (x, g) = (input(&[B, 256, 16, 16], 1, d)?, input(&[B, 256, 16, 16], 2, d)?);
            Ok(vec![dropout::forward(&x, 0.1, draw, 0)?, dropout::backward(&g, 0.1, draw, 0)?])
        }),
    ));
    // bf16: the same mask; kept values x / (1 − p) in f32, rounded once.
    cases.push(case(
        "dropout fwd+bwd bf16",
        "[2, 64, 16, 16] p0.1",
        BF16_ROUND + 1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(11, 5);
            let (x, g) = (input_bf16(&[B, 64, 16, 16], 1, d)?, input_bf16(&[B, 64, 16, 16], 2, d)?);
            let y = expect_dtype(dropout::forward(&x, 0.1, draw, 0)?, DType::Bf16)?;
            Ok(vec![y, expect_dtype(dropout::backward(&g, 0.1, draw, 0)?, DType::Bf16)?])
        }),
    ));
    // A data-parallel replica's slice: its elements start at an element offset that is not a multiple of 4
    // (partial Philox blocks at both ends).
    cases.push(case(
        "dropout fwd+bwd at an offset",
        "[2, 3, 5, 7] p0.3 first 4099",
        1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(13, 2);
            let (x, g) = (input(&[B, 3, 5, 7], 1, d)?, input(&[B, 3, 5, 7], 2, d)?);
            Ok(vec![dropout::forward(&x, 0.3, draw, 4099)?, dropout::backward(&g, 0.3, draw, 4099)?])
        }),
    ));
    cases.push(case(
        "dropout fwd+bwd bf16 at an offset",
        "[2, 3, 5, 7] p0.3 first 4099",
        BF16_ROUND + 1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(13, 2);
            let (x, g) = (input_bf16(&[B, 3, 5, 7], 1, d)?, input_bf16(&[B, 3, 5, 7], 2, d)?);
            let y = expect_dtype(dropout::forward(&x, 0.3, draw, 4099)?, DType::Bf16)?;
            Ok(vec![y, expect_dtype(dropout::backward(&g, 0.3, draw, 4099)?, DType::Bf16)?])
        }),
    ));
}
