//! The FID path's pooling selftest cases: max / average pooling (Inception's 3×3 windows and an odd case), global average pooling.

use super::Pool2d;
use crate::ops::pool;
use crate::selftest::{case, input, Case, Shapes, B};

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    for (xs, p) in [
        (vec![B, 64, 37, 37], Pool2d::new(3, 2, 0)),
        (vec![B, 192, 17, 17], Pool2d::new(3, 1, 1)),
        (vec![3, 5, 9, 11], Pool2d::new(4, 3, 2)),
    ] {
        let k = format!("{xs:?} k{} s{} p{}", p.kernel, p.stride, p.padding);
        let xs2 = xs.clone();
        cases.push(case(
            "max_pool2d fwd",
            k.clone(),
            0.0,
            Box::new(move |d| Ok(vec![pool::max_pool2d_forward(&input(&xs2, 1, d)?, p)?])),
        ));
        cases.push(case(
            "avg_pool2d fwd (pad in/out)",
            k,
            1e-6,
            Box::new(move |d| {
                let x = input(&xs, 1, d)?;
                Ok(vec![pool::avg_pool2d_forward(&x, p, true)?, pool::avg_pool2d_forward(&x, p, false)?])
            }),
        ));
    }
    for xs in [vec![B, 2048, 8, 8], vec![3, 5, 9, 11]] {
        cases.push(case(
            "global_avg_pool fwd",
            format!("{xs:?}"),
            1e-6,
            Box::new(move |d| Ok(vec![pool::global_avg_pool_forward(&input(&xs, 1, d)?)?])),
        ));
    }
}
