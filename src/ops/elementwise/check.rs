//! elementwise selftest cases: broadcast binary ops, the bias-gradient reduction, scale and add_scalar.

use super::BinaryOp;
use crate::ops::elementwise;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark rows (`ddpm-cuda bench kernels`) at the 16×16 level's activations [B, 256, 16, 16]: a residual add,
/// the time-embedding bias add ([B, C, 1, 1] broadcast) and its gradient (the reduction back to [B, C, 1, 1]).
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 256, 16, 16];
    let per_channel = [batch, 256, 1, 1];
    let n = batch * 256 * 256;
    rows.push(row("add", format!("{s:?}"), Work::f32s(n, 3), move |d| {
        let (x, y) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        Ok(Box::new(move || elementwise::forward(BinaryOp::Add, &x, &y).map(drop)))
    }));
    rows.push(row("add bias [N,C,1,1]", format!("{s:?}"), Work::f32s(n, 2), move |d| {
        let (x, bias) = (rand(&s, 1, d)?, rand(&per_channel, 3, d)?);
        Ok(Box::new(move || elementwise::forward(BinaryOp::Add, &x, &bias).map(drop)))
    }));
    rows.push(row("bias grad (reduce)", format!("{s:?}"), Work::f32s(n, 1), move |d| {
        let g = rand(&s, 1, d)?;
        Ok(Box::new(move || elementwise::reduce_to_shape(&g, &per_channel).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    let big = vec![B, 256, 16, 16];
    let bias = vec![B, 256, 1, 1];
    for (op, a, b) in [
        (BinaryOp::Add, big.clone(), big.clone()),
        (BinaryOp::Mul, big.clone(), big.clone()),
        (BinaryOp::Sub, big.clone(), big.clone()),
        (BinaryOp::Add, big.clone(), bias.clone()),
        (BinaryOp::Sub, bias.clone(), big.clone()),
        (BinaryOp::Mul, big.clone(), vec![256, 1, 1]),
        (BinaryOp::Add, vec![3, 6, 5, 7], vec![1]),
    ] {
        cases.push(case(
            format!("{op:?} fwd").to_lowercase(),
            format!("{a:?}∘{b:?}"),
            1e-5,
            Box::new(move |d| Ok(vec![elementwise::forward(op, &input(&a, 1, d)?, &input(&b, 2, d)?)?])),
        ));
    }
    for target in [vec![1, 256, 1, 1], bias.clone(), vec![256, 1, 1]] {
        let g = big.clone();
        cases.push(case(
            "reduce_to_shape (bias grad)",
            format!("{g:?}→{target:?}"),
            1e-5,
            Box::new(move |d| Ok(vec![elementwise::reduce_to_shape(&input(&g, 1, d)?, &target)?])),
        ));
    }
    let s = big.clone();
    cases.push(case(
        "scale, add_scalar",
        format!("{s:?}"),
        1e-6,
        Box::new(move |d| {
            let x = input(&s, 1, d)?;
            Ok(vec![x.scale(-0.7)?, elementwise::add_scalar_tensor(&x, 0.25)?])
        }),
    ));
    // bf16: same-shape add/sub/mul of bf16 operands, a bf16 activation + an f32 [N, C, 1, 1] bias (the time
    // embedding), scale and add_scalar: f32 maths, one rounding (2⁻⁹ + the f32 cases' 1e-5). The bias gradient
    // of a bf16 g: f32 sums of exact inputs and an f32 result (the f32 case's 1e-5).
    let (big, bias) = (vec![B, 64, 8, 8], vec![B, 64, 1, 1]);
    for (op, b_shape, b_bf16) in [
        (BinaryOp::Add, big.clone(), true),
        (BinaryOp::Sub, big.clone(), true),
        (BinaryOp::Mul, big.clone(), true),
        (BinaryOp::Add, bias.clone(), false),
    ] {
        let a = big.clone();
        cases.push(case(
            format!("{op:?} fwd bf16").to_lowercase(),
            format!("{a:?}∘{b_shape:?}"),
            BF16_ROUND + 1e-5,
            Box::new(move |d| {
                let b = if b_bf16 { input_bf16(&b_shape, 2, d)? } else { input(&b_shape, 2, d)? };
                Ok(vec![expect_dtype(elementwise::forward(op, &input_bf16(&a, 1, d)?, &b)?, DType::Bf16)?])
            }),
        ));
    }
    let (g, target) = (big.clone(), bias.clone());
    cases.push(case(
        "reduce_to_shape bf16 g",
        format!("{g:?}→{target:?}"),
        1e-5,
        Box::new(move |d| Ok(vec![expect_dtype(elementwise::reduce_to_shape(&input_bf16(&g, 1, d)?, &target)?, DType::F32)?])),
    ));
    cases.push(case(
        "scale, add_scalar bf16",
        format!("{big:?}"),
        BF16_ROUND + 1e-6,
        Box::new(move |d| {
            let x = input_bf16(&big, 1, d)?;
            let y = expect_dtype(x.scale(-0.7)?, DType::Bf16)?;
            Ok(vec![y, expect_dtype(elementwise::add_scalar_tensor(&x, 0.25)?, DType::Bf16)?])
        }),
    ));
}
