//! The FID path's pooling selftest cases: max / average pooling (Inception's 3×3 windows and an odd case), global average pooling.

use super::Pool2d;
use crate::ops::pool;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, input, Case, Shapes, B};

/// The benchmark rows (`ddpm-cuda bench kernels`): the FID Inception's first max pool (3×3 stride 2 over
/// [B, 64, 147, 147]), a 3×3 average pool at 35×35 and the final global average pool.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let (first, mid, last) = ([batch, 64, 147, 147], [batch, 192, 35, 35], [batch, 2048, 8, 8]);
    let out = |s: [usize; 4], k: usize, st: usize, pad: usize| s[0] * s[1] * ((s[2] + 2 * pad - k) / st + 1).pow(2);
    let n = |s: [usize; 4]| s.iter().product::<usize>();
    let max = Pool2d::new(3, 2, 0);
    let work = Work::Bytes(4.0 * (n(first) + out(first, 3, 2, 0)) as f64);
    rows.push(row("max_pool2d fwd", format!("{first:?} k3 s2"), work, move |d| {
        let x = rand(&first, 1, d)?;
        Ok(Box::new(move || pool::max_pool2d_forward(&x, max).map(drop)))
    }));
    let avg = Pool2d::new(3, 1, 1);
    rows.push(row("avg_pool2d fwd", format!("{mid:?} k3 s1 p1"), Work::f32s(n(mid), 2), move |d| {
        let x = rand(&mid, 1, d)?;
        Ok(Box::new(move || pool::avg_pool2d_forward(&x, avg, false).map(drop)))
    }));
    rows.push(row("global_avg_pool fwd", format!("{last:?}"), Work::f32s(n(last), 1), move |d| {
        let x = rand(&last, 1, d)?;
        Ok(Box::new(move || pool::global_avg_pool_forward(&x).map(drop)))
    }));
}

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
