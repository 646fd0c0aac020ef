//! The fused diffusion steps' selftest cases (q_sample, reverse_step).

use super::{q_sample, reverse_step, StepCoefs};
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, input, Case, Shapes, B};

/// The benchmark rows (`ddpm-cuda bench kernels`): the fused forward-noising and reverse steps on a batch of
/// 32×32 RGB images.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 3, 32, 32];
    let n = batch * 3 * 1024;
    rows.push(row("q_sample", format!("{s:?}"), Work::f32s(n, 3), move |d| {
        let (x0, e) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        let (a, b) = (vec![0.7; batch], vec![0.71; batch]);
        Ok(Box::new(move || q_sample(&x0, &e, &a, &b).map(drop)))
    }));
    rows.push(row("reverse_step", format!("{s:?}"), Work::f32s(n, 4), move |d| {
        let (x, e, z) = (rand(&s, 1, d)?, rand(&s, 2, d)?, rand(&s, 3, d)?);
        let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.0, sigma: 0.2 };
        Ok(Box::new(move || reverse_step(&x, &e, Some(&z), c).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    let s = vec![B, 3, 32, 32];
    let s1 = s.clone();
    cases.push(case(
        "q_sample",
        format!("{s:?}"),
        1e-6,
        Box::new(move |d| {
            let (a, b) = (vec![0.9, 0.3], vec![0.435_89, 0.953_94]);
            Ok(vec![q_sample(&input(&s1, 1, d)?, &input(&s1, 2, d)?, &a, &b)?])
        }),
    ));
    let s2 = s.clone();
    cases.push(case(
        "reverse_step",
        format!("{s:?}"),
        1e-5,
        Box::new(move |d| {
            let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.1, sigma: 0.2 };
            let (x, e, z) = (input(&s2, 1, d)?, input(&s2, 2, d)?, input(&s2, 3, d)?);
            Ok(vec![reverse_step(&x, &e, Some(&z), c)?, reverse_step(&x, &e, None, StepCoefs { sigma: 0.0, ..c })?])
        }),
    ));
}
