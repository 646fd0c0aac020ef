//! linear's selftest cases (forward through both GEMM paths, backward).

use crate::backend::cuda_gemm::GemmImpl;
use crate::ops::linear;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::{case, expect_dtype, input, input_bf16, param_bf16, Case, Shapes, B, BF16_ROUND};
use crate::DType;

/// The benchmark rows (`ddpm-cuda bench kernels`): the time-embedding MLP's linears (in, out), through cuBLAS
/// (when it loads) and through the GEMM kernel.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    for (imp, op) in [(GemmImpl::Auto, "linear fwd (cuBLAS)"), (GemmImpl::Kernel, "linear fwd (kernel)")] {
        for (fin, fout) in [(128, 512), (512, 512), (512, 256)] {
            let flops = Work::Flops(2.0 * (batch * fin * fout) as f64);
            rows.push(row(op, format!("[{batch}, {fin}]→{fout}"), flops, move |d| {
                let (x, w, b) = (rand(&[batch, fin], 1, d)?, rand(&[fout, fin], 2, d)?, rand(&[fout], 3, d)?);
                Ok(Box::new(move || linear::forward_with(&x, &w, Some(&b), imp).map(drop)))
            })
            .cuda_only());
        }
    }
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    for (n, fin, fout) in [(B, 128, 512), (B, 512, 512), (B, 512, 256), (3, 7, 5)] {
        for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
            let name = if imp == GemmImpl::Kernel { "linear fwd (kernel)" } else { "linear fwd" };
            cases.push(case(
                name,
                format!("[{n}, {fin}]*{fout}"),
                1e-4,
                Box::new(move |d| {
                    let (x, w, b) = (input(&[n, fin], 1, d)?, input(&[fout, fin], 2, d)?, input(&[fout], 3, d)?);
                    Ok(vec![linear::forward_with(&x, &w, Some(&b), imp)?])
                }),
            ));
        }
        cases.push(case(
            "linear bwd (dx dw db)",
            format!("[{n}, {fin}]*{fout}"),
            1e-4,
            Box::new(move |d| {
                let (x, w, gy) = (input(&[n, fin], 1, d)?, input(&[fout, fin], 2, d)?, input(&[n, fout], 4, d)?);
                let (dx, dw, db) = linear::backward(&x, &w, &gy, [true; 3])?;
                Ok(vec![dx.expect("dx"), dw.expect("dw"), db.expect("db")])
            }),
        ));
    }
    // bf16 x and dy, the f32 weight rounded to bf16 by the op (the CPU reference gets the rounded weight): f32
    // accumulation as the f32 case (1e-4), y and dx rounded once (2⁻⁹), dw and db f32.
    for (n, fin, fout) in [(B, 128, 512), (3, 7, 5)] {
        cases.push(case(
            "linear fwd+bwd bf16",
            format!("[{n}, {fin}]*{fout}"),
            BF16_ROUND + 1e-4,
            Box::new(move |d| {
                let x = input_bf16(&[n, fin], 1, d)?;
                let w = param_bf16(&input(&[fout, fin], 2, &crate::Device::Cpu)?, d)?;
                let b = input(&[fout], 3, d)?;
                let y = expect_dtype(linear::forward(&x, &w, Some(&b))?, DType::Bf16)?;
                let gy = input_bf16(&[n, fout], 4, d)?;
                let (dx, dw, db) = linear::backward(&x, &w, &gy, [true; 3])?;
                let dx = expect_dtype(dx.expect("dx"), DType::Bf16)?;
                let dw = expect_dtype(dw.expect("dw"), DType::F32)?;
                Ok(vec![y, dx, dw, expect_dtype(db.expect("db"), DType::F32)?])
            }),
        ));
    }
}
