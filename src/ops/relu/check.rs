//! relu's selftest cases.

use crate::ops::relu;
use crate::selftest::{case, input, Case, Shapes, B};

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
