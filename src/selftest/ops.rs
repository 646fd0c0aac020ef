//! The selftest cases that belong to no op folder (the device GEMM, the Philox normal draw), and the collection of
//! every op's cases from its `ops/<op>/check.rs` through the registry (`ops::CHECKS`).

use super::bf16::{backend, bf16_result, f32_result, host_input, round_bf16, tol_bf16_out, tol_f32_sum, upload_bf16};
use super::{case, input, Case, Shapes, B};
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda_gemm::{self, Gemm, GemmImpl};
use crate::backend::cuda_gemm_bf16::gemm_bf16_with;
use crate::backend::Storage;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

fn gemm_cases(cases: &mut Vec<Case>) {
    for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
        let name = if imp == GemmImpl::Kernel { "kernel" } else { "auto" };
        for (m, n, k, ta, tb, batch) in [
            (70, 50, 33, false, false, 1),
            (70, 50, 33, true, false, 1),
            (70, 50, 33, false, true, 2),
            (70, 50, 33, true, true, 3),
            (256, 256, 256, true, false, 2),
        ] {
            cases.push(case(
                format!("gemm ({name})"),
                format!("{m}x{n}x{k} t{}{} b{batch}", u8::from(ta), u8::from(tb)),
                1e-4,
                Box::new(move |d| {
                    let g = Gemm::new(m, n, k, ta, tb).batched(batch).accumulate();
                    let [la, lb, lc] = g.lens();
                    let (a, b, c) = (input(&[la], 1, d)?, input(&[lb], 2, d)?, input(&[lc], 3, d)?);
                    Ok(vec![run_gemm(&g, &a, &b, &c, imp)?])
                }),
            ));
        }
    }
}

/// The bf16 GEMM (cuBLAS GemmEx or the tensor-core kernel) with bf16 or f32 output, against `cpu::gemm` on the
/// bf16-rounded operands (tolerances derived in selftest/bf16.rs), and exactly on small-integer operands. The
/// shapes give partial tiles in M, N and K, every transpose, batches, operands whose rows are not 16-byte aligned
/// (K = 33: element-wise loads) and aligned rows with a partial last chunk (lda = 40 for K = 33).
fn gemm_bf16_cases(cases: &mut Vec<Case>) {
    let shapes: [(Gemm, &str); 6] = [
        (Gemm::new(70, 50, 33, false, false), "70x50x33 t00 b1"),
        (Gemm::new(70, 50, 33, true, false), "70x50x33 t10 b1"),
        (Gemm::new(70, 50, 33, false, true).batched(2), "70x50x33 t01 b2"),
        (Gemm::new(70, 50, 33, true, true).batched(3), "70x50x33 t11 b3"),
        (
            Gemm { lda: 40, ldb: 40, stride_a: 70 * 40, stride_b: 50 * 40, ..Gemm::new(70, 50, 33, false, true) },
            "70x50x33 t01 ld40",
        ),
        (Gemm::new(256, 256, 256, true, false).batched(2), "256x256x256 t10 b2"),
    ];
    for imp in [GemmImpl::Auto, GemmImpl::Kernel] {
        let imp_name = if imp == GemmImpl::Kernel { "kernel" } else { "auto" };
        for out_bf16 in [true, false] {
            for exact in [false, true] {
                if exact && imp != GemmImpl::Kernel {
                    continue;
                }
                for &(g, shape) in &shapes {
                    let g = g.accumulate();
                    let tol = match (exact, out_bf16) {
                        (true, _) => 0.0,
                        (false, true) => tol_bf16_out(g.k + 1),
                        (false, false) => tol_f32_sum(g.k + 1),
                    };
                    let op = format!(
                        "gemm bf16{} ({imp_name}) {}",
                        if exact { " exact" } else { "" },
                        if out_bf16 { "bf16" } else { "f32" }
                    );
                    cases.push(case(
                        op,
                        shape,
                        tol,
                        Box::new(move |d| {
                            let [la, lb, lc] = g.lens();
                            let a = host_input(&[la], 1, exact)?;
                            let b = host_input(&[lb], 2, exact)?;
                            let c = host_input(&[lc], 3, exact)?;
                            if d.is_cpu() {
                                let v = strided_reference(&g, &a, &b, &c);
                                let v = if exact && out_bf16 { round_bf16(&v) } else { v };
                                return Ok(vec![Tensor::from_vec(v, &[lc])?]);
                            }
                            let be = backend(d, "gemm bf16")?;
                            let (a, b) = (upload_bf16(&be, &a)?, upload_bf16(&be, &b)?);
                            if out_bf16 {
                                let mut c = upload_bf16(&be, &c)?;
                                gemm_bf16_with(&be, &g, &a, &b, &mut c, imp)?;
                                Ok(vec![bf16_result(&be, &c, &[lc])?])
                            } else {
                                let mut c = be.stream().clone_htod(&c)?;
                                gemm_bf16_with(&be, &g, &a, &b, &mut c, imp)?;
                                Ok(vec![f32_result(&be, c, &[lc])?])
                            }
                        }),
                    ));
                }
            }
        }
    }
}

/// `g` on the CPU for any leading dimensions: each batch item's op(A), op(B) copied out densely, then `cpu::gemm`.
fn strided_reference(g: &Gemm, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f32> {
    let mut out = c.to_vec();
    for bi in 0..g.batch {
        let (oa, ob) = (bi * g.stride_a, bi * g.stride_b);
        let da: Vec<f32> = (0..g.m * g.k)
            .map(|e| {
                let (i, p) = (e / g.k, e % g.k);
                a[oa + if g.ta { p * g.lda + i } else { i * g.lda + p }]
            })
            .collect();
        let db: Vec<f32> = (0..g.k * g.n)
            .map(|e| {
                let (p, j) = (e / g.n, e % g.n);
                b[ob + if g.tb { j * g.ldb + p } else { p * g.ldb + j }]
            })
            .collect();
        let co = &mut out[bi * g.stride_c..];
        assert_eq!(g.ldc, g.n, "the reference writes C densely");
        cpu::gemm(co, Mat::new(&da, g.m, g.k), Mat::new(&db, g.k, g.n), g.beta != 0.0, Threads::All);
    }
    out
}

/// `g` on either device: `cpu::gemm` per batch item, or the device GEMM with the chosen implementation.
fn run_gemm(g: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor, imp: GemmImpl) -> Result<Tensor> {
    match (a.storage(), b.storage(), c.storage()) {
        (Storage::Cpu(av), Storage::Cpu(bv), Storage::Cpu(cv)) => {
            let mut out = cv.clone();
            for i in 0..g.batch {
                let am = Mat::new(&av[i * g.stride_a..], if g.ta { g.k } else { g.m }, if g.ta { g.m } else { g.k });
                let bm = Mat::new(&bv[i * g.stride_b..], if g.tb { g.n } else { g.k }, if g.tb { g.k } else { g.n });
                let (am, bm) = (if g.ta { am.t() } else { am }, if g.tb { bm.t() } else { bm });
                cpu::gemm(&mut out[i * g.stride_c..], am, bm, g.beta != 0.0, Threads::All);
            }
            Tensor::from_vec(out, c.shape())
        }
        (Storage::Cuda(av), Storage::Cuda(bv), Storage::Cuda(cv)) => {
            let mut out = cv.try_clone()?;
            cuda_gemm::gemm(av.backend(), g, av.f32("selftest")?, bv.f32("selftest")?, out.f32_mut("selftest")?, imp)?;
            Tensor::from_storage(Storage::Cuda(out), c.shape())
        }
        _ => Err(Error::msg("gemm case: mixed devices")),
    }
}

fn rng_cases(cases: &mut Vec<Case>) {
    cases.push(case(
        "philox normal",
        "[2, 3, 32, 32]",
        1e-5,
        Box::new(|d| Ok(vec![Philox::from_state(7, 3).normal_on(&[B, 3, 32, 32], d)?])),
    ));
}

pub(super) fn cases(shapes: Shapes) -> Vec<Case> {
    let mut cases = Vec::new();
    for op_cases in crate::ops::CHECKS {
        op_cases(&mut cases, shapes);
    }
    gemm_cases(&mut cases);
    gemm_bf16_cases(&mut cases);
    rng_cases(&mut cases);
    cases
}
