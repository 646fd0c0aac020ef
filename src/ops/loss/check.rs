//! The MSE loss's selftest case.

use crate::ops::loss;
use crate::Tensor;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark row (`ddpm-cuda bench kernels`): L_simple's mean squared error over a batch of 32×32 RGB images.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 3, 32, 32];
    rows.push(row("mse", format!("{s:?}"), Work::f32s(batch * 3 * 1024, 2), move |d| {
        let (pred, target) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        Ok(Box::new(move || loss::forward(&pred, &target).map(drop)))
    }));
}

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
    // A bf16 prediction (the f32 target as in training): widened exactly, so the loss is the f32 case's (1e-5);
    // the gradient is rounded once to the prediction's bf16.
    let s4 = s.clone();
    cases.push(case(
        "mse fwd+bwd bf16 pred",
        format!("{s:?}"),
        BF16_ROUND + 1e-5,
        Box::new(move |d| {
            let (p, t) = (input_bf16(&s4, 1, d)?, input(&s4, 2, d)?);
            let l = loss::forward(&p, &t)?;
            let g = Tensor::full(&[], 0.7, d)?;
            Ok(vec![l, expect_dtype(loss::backward(&p, &t, &g)?, DType::Bf16)?])
        }),
    ));
}
