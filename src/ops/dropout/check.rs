//! dropout's selftest case.

use crate::ops::dropout;
use crate::rng::Philox;
use crate::selftest::{case, input, Case, Shapes, B};

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    cases.push(case(
        "dropout fwd+bwd",
        "[2, 256, 16, 16] p0.1",
        1e-6,
        Box::new(|d| {
            let draw = Philox::from_state(11, 5);
            let (x, g) = (input(&[B, 256, 16, 16], 1, d)?, input(&[B, 256, 16, 16], 2, d)?);
            Ok(vec![dropout::forward(&x, 0.1, draw)?, dropout::backward(&g, 0.1, draw)?])
        }),
    ));
}
