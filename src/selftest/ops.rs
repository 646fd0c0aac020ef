//! The selftest cases that belong to no op folder (the device GEMM, the Philox normal draw), and the collection of
//! every op's cases from its `ops/<op>/check.rs` through the registry (`ops::CHECKS`).

use super::{case, input, Case, Shapes, B};
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda_gemm::{self, Gemm, GemmImpl};
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
    rng_cases(&mut cases);
    cases
}
