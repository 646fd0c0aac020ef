//! relu's selftest cases.

use crate::ops::relu;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, input, Case, Shapes, B};

/// The benchmark row (`ddpm-cuda bench kernels`): ReLU over an Inception activation [B, 192, 35, 35].
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 192, 35, 35];
    rows.push(row("relu fwd", format!("{s:?}"), Work::f32s(batch * 192 * 35 * 35, 2), move |d| {
        let x = rand(&s, 1, d)?;
        Ok(Box::new(move || relu::relu_forward(&x).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    for xs in [vec![B, 192, 35, 35], vec![3, 5, 9, 11]] {
        cases.push(case(
            "relu fwd",
            format!("{xs:?}"),
            0.0,
            Box::new(move |d| Ok(vec![relu::relu_forward(&input(&xs, 1, d)?)?])),
        ));
    }
}
