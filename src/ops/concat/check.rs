//! concat's selftest case (forward and the split backward).

use crate::ops::concat;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B};
use crate::DType;

/// The benchmark row (`ddpm-cuda bench kernels`): a skip concatenation of two [B, 256, 16, 16] tensors.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 256, 16, 16];
    rows.push(row("concat", format!("{s:?}|{s:?}"), Work::f32s(batch * 256 * 256, 4), move |d| {
        let xs = [rand(&s, 1, d)?, rand(&s, 2, d)?];
        Ok(Box::new(move || concat::forward(&xs).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    cases.push(case(
        "concat fwd + split bwd",
        "[2, 256, 16, 16]|[2, 128, 16, 16]",
        0.0,
        Box::new(|d| {
            let (a, b) = (input(&[B, 256, 16, 16], 1, d)?, input(&[B, 128, 16, 16], 2, d)?);
            let y = concat::forward(&[a.clone(), b.clone()])?;
            let g = input(y.shape(), 3, d)?;
            let parts = concat::split(&g, &[a.shape().to_vec(), b.shape().to_vec()], &[true, true])?;
            let mut out = vec![y];
            out.extend(parts.into_iter().map(|p| p.expect("part")));
            Ok(out)
        }),
    ));
    // bf16: copies, so exact.
    cases.push(case(
        "concat fwd + split bwd bf16",
        "[2, 64, 8, 8]|[2, 32, 8, 8]",
        0.0,
        Box::new(|d| {
            let (a, b) = (input_bf16(&[B, 64, 8, 8], 1, d)?, input_bf16(&[B, 32, 8, 8], 2, d)?);
            let y = expect_dtype(concat::forward(&[a.clone(), b.clone()])?, DType::Bf16)?;
            let g = input_bf16(y.shape(), 3, d)?;
            let parts = concat::split(&g, &[a.shape().to_vec(), b.shape().to_vec()], &[true, true])?;
            let mut out = vec![y];
            for p in parts {
                out.push(expect_dtype(p.expect("part"), DType::Bf16)?);
            }
            Ok(out)
        }),
    ));
}
