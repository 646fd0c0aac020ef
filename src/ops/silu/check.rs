//! silu's selftest cases.

use crate::ops::silu;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, input, Case, Shapes, B};

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
}
