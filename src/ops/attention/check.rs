//! attention's selftest cases: the 16×16 level's tokens (full or reduced channels) and odd sizes.

use crate::ops::attention;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::{DType, Device, Result, Tensor};

/// The benchmark rows (`ddpm-cuda bench kernels`): the 16×16 level's attention, 256 channels × 256 tokens.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 256, 256];
    // S = QᵀK and O = V Pᵀ: 2·B·T²·C each; the backward does twice that.
    let flops = 2.0 * (2 * batch * 256 * 256 * 256) as f64;
    let inputs = move |d: &Device| -> Result<[Tensor; 4]> {
        Ok([rand(&s, 1, d)?, rand(&s, 2, d)?, rand(&s, 3, d)?, rand(&s, 4, d)?])
    };
    rows.push(row("attention fwd", format!("{s:?}"), Work::Flops(flops), move |d| {
        let [q, k, v, _] = inputs(d)?;
        Ok(Box::new(move || attention::forward(&q, &k, &v).map(drop)))
    }));
    rows.push(row("attention bwd", format!("{s:?}"), Work::Flops(2.0 * flops), move |d| {
        let [q, k, v, g] = inputs(d)?;
        let (_, p) = attention::forward(&q, &k, &v)?;
        Ok(Box::new(move || attention::backward(&q, &k, &v, &p, &g, [true; 3]).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, shapes: Shapes) {
    // [batch, channels, tokens]: the 16×16 level's 256 tokens (at 256 channels, or 64 when reduced), others.
    let attention: &[(usize, usize, usize)] = match shapes {
        Shapes::Full => &[(B, 256, 256), (B, 64, 196), (3, 8, 10)],
        Shapes::Reduced => &[(B, 64, 256), (B, 24, 70), (3, 8, 10)],
    };
    for &(b, c, t) in attention {
        cases.push(case(
            "attention fwd+bwd",
            format!("[{b}, {c}, {t}]"),
            1e-4,
            Box::new(move |d| {
                let s = [b, c, t];
                // Scaled up so the softmax is far from uniform.
                let (q, k, v) = (input(&s, 1, d)?.scale(3.0)?, input(&s, 2, d)?.scale(3.0)?, input(&s, 3, d)?);
                let (o, p) = attention::forward(&q, &k, &v)?;
                let g = input(&s, 4, d)?;
                let (dq, dk, dv) = attention::backward(&q, &k, &v, &p, &g, [true; 3])?;
                Ok(vec![o, p, dq.expect("dq"), dk.expect("dk"), dv.expect("dv")])
            }),
        ));
    }
    // bf16 q, k, v, dO (the CPU reference on the same rounded values): the f32 maths of the f32 case (1e-4),
    // each output rounded once to bf16 (2⁻⁹). The fused path keeps no P: the outputs are O, dQ, dK, dV.
    let bf16: &[(usize, usize, usize)] = match shapes {
        Shapes::Full => &[(B, 256, 256), (3, 8, 10)],
        Shapes::Reduced => &[(B, 64, 256), (3, 8, 10)],
    };
    for &(b, c, t) in bf16 {
        cases.push(case(
            "attention fwd+bwd bf16",
            format!("[{b}, {c}, {t}]"),
            BF16_ROUND + 1e-4,
            Box::new(move |d| {
                let s = [b, c, t];
                // ×3 is rounded to bf16 on the device: the CPU rounds the same product.
                let scaled = |seed| -> crate::Result<crate::Tensor> {
                    let t = input_bf16(&s, seed, d)?.scale(3.0)?;
                    if d.is_cpu() {
                        crate::selftest::round_bf16(&t)
                    } else {
                        Ok(t)
                    }
                };
                let (q, k, v) = (scaled(1)?, scaled(2)?, input_bf16(&s, 3, d)?);
                let g = input_bf16(&s, 4, d)?;
                if d.is_cpu() {
                    let (o, p) = attention::forward(&q, &k, &v)?;
                    let (dq, dk, dv) = attention::backward(&q, &k, &v, &p, &g, [true; 3])?;
                    return Ok(vec![o, dq.expect("dq"), dk.expect("dk"), dv.expect("dv")]);
                }
                let (o, lse) = attention::forward_bf16(&q, &k, &v)?;
                let (dq, dk, dv) = attention::backward_bf16(&q, &k, &v, &o, &lse, &g)?;
                let bf = |t| expect_dtype(t, DType::Bf16);
                Ok(vec![bf(o)?, bf(dq)?, bf(dk)?, bf(dv)?])
            }),
        ));
    }
}
