//! silu's selftest cases.

use crate::ops::silu;
use crate::selftest::{case, input, Case, Shapes, B};

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
