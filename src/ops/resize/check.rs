//! The bilinear resize's selftest cases (to 299×299, and a shrinking odd one).

use crate::ops::resize;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, input, Case, Shapes, B};

/// The benchmark row (`ddpm-cuda bench kernels`): 32×32 RGB images resized to Inception's 299×299.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 3, 32, 32];
    let work = Work::Bytes(4.0 * (batch * 3 * (32 * 32 + 299 * 299)) as f64);
    rows.push(row("resize_bilinear fwd", format!("{s:?}→299x299"), work, move |d| {
        let x = rand(&s, 1, d)?;
        Ok(Box::new(move || resize::resize_bilinear_forward(&x, 299, 299).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    for (xs, oh, ow) in [(vec![B, 3, 32, 32], 299, 299), (vec![3, 2, 7, 5], 11, 4)] {
        cases.push(case(
            "resize_bilinear fwd",
            format!("{xs:?}→{oh}x{ow}"),
            1e-6,
            Box::new(move |d| Ok(vec![resize::resize_bilinear_forward(&input(&xs, 1, d)?, oh, ow)?])),
        ));
    }
}
