//! The MSE loss's selftest case.

use crate::ops::loss;
use crate::Tensor;
use crate::selftest::{case, input, Case, Shapes, B};

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    let s = vec![B, 3, 32, 32];
    let s3 = s.clone();
    cases.push(case(
        "mse fwd+bwd",
        format!("{s:?}"),
        1e-5,
        Box::new(move |d| {
            let (p, t) = (input(&s3, 1, d)?, input(&s3, 2, d)?);
            let l = loss::forward(&p, &t)?;
            let g = Tensor::full(&[], 0.7, d)?;
            Ok(vec![l, loss::backward(&p, &t, &g)?])
        }),
    ));
}
