//! upsample2x's selftest case.

use crate::ops::upsample;
use crate::selftest::{case, input, Case, Shapes, B};

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
}
