//! attention's selftest cases: the 16×16 level's tokens (full or reduced channels) and odd sizes.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::CudaBackend;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::ops::attention::{self, flash};
use crate::selftest::{case, expect_dtype, input, input_bf16, Case, Shapes, B, BF16_ROUND};
use crate::{DType, Device, Error, Result, Tensor};

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
    // The fused bf16 kernels (kernels/attention_flash.cu), the same useful FLOPs as the rows above (the backward
    // recomputes the scores: its kernels do more than the 2× counted).
    rows.push(
        row("attention fwd (bf16 fused)", format!("{s:?}"), Work::Flops(flops), move |d| {
            let fused = FlashBench::new(d, batch, 256, 256)?;
            Ok(Box::new(move || fused.forward()))
        })
        .cuda_only(),
    );
    rows.push(
        row("attention bwd (bf16 fused)", format!("{s:?}"), Work::Flops(2.0 * flops), move |d| {
            let fused = FlashBench::new(d, batch, 256, 256)?;
            Ok(Box::new(move || fused.backward()))
        })
        .cuda_only(),
    );
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
    // The Tensor-level bf16 op (the dispatch to the fused kernels, or to the unfused path for shapes they do not
    // take), bf16 q, k, v, dO against the CPU reference on the same rounded values. The unfused path: the f32 maths
    // of the f32 case (1e-4) and each output rounded once to bf16 (2⁻⁸). The fused one also rounds P and dS to bf16
    // for its products: the bound `flash_tolerances` derives for these very inputs.
    let bf16: &[(usize, usize, usize)] = match shapes {
        Shapes::Full => &[(B, 256, 256), (3, 8, 10)],
        Shapes::Reduced => &[(B, 64, 256), (3, 8, 10)],
    };
    for &(b, c, t) in bf16 {
        let tol = if flash::flash_supports(c, t) {
            let s = [b, c, t];
            let host = |seed, scale: f32| -> Vec<f32> {
                let x = input(&s, seed, &Device::Cpu).expect("a CPU input").to_vec().expect("CPU values");
                // Rounded, scaled (exact: ×3 of a bf16 needs at most 10 bits, rounded again as the device does).
                x.iter().map(|&x| bf16::from_f32(bf16::from_f32(x).to_f32() * scale).to_f32()).collect()
            };
            let (q, k, v, g) = (host(1, 3.0), host(2, 3.0), host(3, 1.0), host(4, 1.0));
            let (fwd, bwd) = flash_tolerances(&q, &k, &v, &g, b, c, t);
            fwd.max(bwd)
        } else {
            BF16_ROUND + 1e-4
        };
        cases.push(case(
            "attention fwd+bwd bf16",
            format!("[{b}, {c}, {t}]"),
            tol,
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
    flash_cases(cases, shapes);
}

/// The fused bf16 kernels' cases (`flash.rs`): partial query and key tiles, the scalar-load path (T % 8 ≠ 0), several
/// tiles, C = 16 / 32 / 64 / 256, the cifar10 level T = 256, and an exact case. The backward's dQ is the sum of one
/// share per block of 64 keys: 1 (T = 10), 2 (T = 70), 3 with a partial last block and batch 2 (T = 136), 4 (T = 256).
///
/// Tolerances: the inputs are rounded to bf16 first and the f32 CPU reference runs on the rounded values, so only the
/// kernels' own rounding is measured. With u = 2⁻⁹ (bf16's unit roundoff) and ε_P the relative error of a
/// recomputed probability before rounding (the f32 score S = Σ_c q k of exact bf16 products is off by at most
/// C·2⁻²⁴·Σ_c |q k|, once in S and once through the row max / lse, times 1/√C, plus exp2's 2⁻²²), each output's
/// error is bounded by (`flash_tolerances` evaluates these on the case's own inputs):
///   O  = Σ_j P v:           u·|O| (output) + (u + ε_P)·Σ_j P |v| (P rounded to bf16 for the mma)
///   dV = Σ_i P dO:          u·|dV| + (u + ε_P)·Σ_i P |dO|
///   dQ = Σ_j dS K / √C:     u·|dQ| + Σ_j |K| w_ij / √C,   dK = Σ_i dS Q / √C:   u·|dK| + Σ_i |Q| w_ij / √C,
///   with w_ij = (u + ε_P)·|dS_ij| (dS rounded to bf16) + P_ij·(u + C·2⁻²⁴)·Σ_c |dO O| (D = rowsum(dO ⊙ O) from
///   the bf16-rounded O, f32 sum) + P_ij·C·2⁻²⁴·Σ_c |dO v| (dP's f32 sum);
/// all f32 products of bf16 values are exact. That is the worst case (every rounding the same way); at C = 256 the
/// dQ / dK one reaches ~|ref| + rms (useless: a zeroed output would pass), because P nearly one-hot makes dS a small
/// difference of large terms. So each element's bound is the smaller of the worst case and 6σ of the statistical
/// model: each bf16 rounding an independent error uniform in ±u·|x| (variance u²·x²/3), the same ΔD_i for a whole
/// query row, giving σ = u/√3 · √(Σ of the squared rounded terms) (e.g. O: √(O² + Σ_j (P v)²); dQ: √(dQ² +
/// Σ_j (dS K)²/C + (Σ_j P K)²·Σ_c (dO O)²/C)), and the f32 sums of C terms at √(C/3)·2⁻²⁴ instead of C·2⁻²⁴ of
/// their absolute sums (the same model for the f32 roundings of the partial sums). The selftest's metric divides by
/// |ref| + rms(ref), so a case's tolerance is the largest bound / (|ref| + rms(ref)) over its outputs, times 1.1
/// for the f32 reference's own rounding (at most (T + C)·2⁻²⁴ relative to the same absolute sums, < 2% of u here)
/// and the f32 terms not listed (online-softmax rescaling, 1/l: a few 2⁻²⁴). lse (forward) is f32 throughout (its
/// error, ~C·2⁻²⁴·Σ|q k|/√C, is far below O's).
fn flash_cases(cases: &mut Vec<Case>, shapes: Shapes) {
    // [batch, channels, tokens].
    let sizes: &[(usize, usize, usize)] = match shapes {
        Shapes::Full => &[(B, 256, 256), (B, 64, 196), (B, 128, 520), (3, 32, 10), (B, 16, 70)],
        Shapes::Reduced => &[(1, 256, 256), (1, 64, 256), (B, 32, 136), (1, 32, 70), (1, 16, 10)],
    };
    // q, k ×3 (as the f32 case: a peaked softmax, the online rescaling at work) at every size; ×1 (a flatter
    // softmax, where dQ and dK are not small differences, so their tolerances are tight) at two.
    let flat = [sizes[0], sizes[3]];
    let runs = sizes.iter().map(|&s| (s, 3.0)).chain(flat.iter().map(|&s| (s, 1.0)));
    for ((b, c, t), qk) in runs {
        let [q, k, v, g] = flash_inputs(b, c, t, qk);
        let (fwd_tol, bwd_tol) = flash_tolerances(&q, &k, &v, &g, b, c, t);
        let shape = format!("[{b}, {c}, {t}] qk×{qk}");
        cases.push(case(
            "attention flash fwd",
            shape.clone(),
            fwd_tol,
            Box::new(move |d| flash_run(d, b, c, t, qk, false)),
        ));
        cases.push(case("attention flash bwd", shape, bwd_tol, Box::new(move |d| flash_run(d, b, c, t, qk, true))));
    }
    let (b, c, t) = match shapes {
        Shapes::Full => (B, 256, 256),
        Shapes::Reduced => (1, 16, 256),
    };
    cases.push(case(
        "attention flash fwd exact",
        format!("[{b}, {c}, {t}], q = 0"),
        0.0,
        Box::new(move |d| flash_exact(d, b, c, t, false)),
    ));
    cases.push(case(
        "attention flash bwd exact",
        format!("[{b}, {c}, {t}], q = 0: dK, dV"),
        0.0,
        Box::new(move |d| flash_exact(d, b, c, t, true)),
    ));
}

/// The cases' inputs q, k (×`qk`), v, dO, rounded to bf16.
fn flash_inputs(b: usize, c: usize, t: usize, qk: f32) -> [Vec<f32>; 4] {
    let s = [b, c, t];
    let host = |seed: u32, scale: f32| -> Vec<f32> {
        let x = input(&s, seed, &Device::Cpu).and_then(|x| x.scale(scale)).and_then(|x| x.to_vec());
        bf16_rounded(x.expect("CPU inputs"))
    };
    [host(1, qk), host(2, qk), host(3, 1.0), host(4, 1.0)]
}

/// (forward, backward) tolerances of a fused case: the error bounds of `flash_cases`' comment evaluated in f64 on the
/// case's inputs, as the selftest's metric (bound / (|ref| + rms(ref)), worst element), times 1.1.
#[allow(clippy::needless_range_loop)] // the token index addresses P, dS, w and the inputs together
fn flash_tolerances(q: &[f32], k: &[f32], v: &[f32], g: &[f32], b: usize, c: usize, t: usize) -> (f32, f32) {
    const U: f64 = 1.0 / 512.0;
    // f32 sums of C terms: worst case C·2⁻²⁴, statistically √(C/3)·2⁻²⁴ of the sum of absolute values.
    let f32_c = c as f64 * 2f64.powi(-24);
    let f32_s = (c as f64 / 3.0).sqrt() * 2f64.powi(-24);
    let sc = 1.0 / (c as f64).sqrt();
    let ct = c * t;
    // Per output (O, dV, dQ, dK): every element's (value, worst-case bound, statistical bound σ).
    let mut outs: [Vec<(f64, f64, f64)>; 4] = Default::default();
    let at = |x: &[f32], ch: usize, i: usize| x[ch * t + i] as f64;
    for bi in 0..b {
        let (qb, kb, vb, gb) = (&q[bi * ct..][..ct], &k[bi * ct..][..ct], &v[bi * ct..][..ct], &g[bi * ct..][..ct]);
        // P, and ε_P of the row (the worst over the batch item, for simplicity).
        let mut p = vec![0.0f64; t * t];
        let (mut eps_p, mut eps_s) = (0.0f64, 0.0f64);
        for i in 0..t {
            let row = &mut p[i * t..][..t];
            for (j, x) in row.iter_mut().enumerate() {
                let (s, s_abs) = (0..c).fold((0.0, 0.0), |(s, a), ch| {
                    let pr = at(qb, ch, i) * at(kb, ch, j);
                    (s + pr, a + pr.abs())
                });
                *x = s * sc;
                eps_p = eps_p.max(2.0 * sc * f32_c * s_abs + 2f64.powi(-22));
                eps_s = eps_s.max(2.0 * sc * f32_s * s_abs + 2f64.powi(-22));
            }
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
            let l: f64 = row.iter().map(|x| (x - m).exp()).sum();
            row.iter_mut().for_each(|x| *x = (*x - m).exp() / l);
        }
        let up = U + eps_p;
        // O (rows = queries) and dV (rows = keys): Σ_r P_r x_r with P rounded to bf16, then the output.
        let mut o = vec![0.0f64; ct];
        for ch in 0..c {
            for i in 0..t {
                for (out, pij, x) in [
                    (0, &|j: usize| p[i * t + j], vb),
                    (1, &|j: usize| p[j * t + i], gb),
                ] as [(usize, &dyn Fn(usize) -> f64, &[f32]); 2]
                {
                    let (mut val, mut abs, mut sq) = (0.0, 0.0, 0.0);
                    for j in 0..t {
                        let term = pij(j) * at(x, ch, j);
                        (val, abs, sq) = (val + term, abs + term.abs(), sq + term * term);
                    }
                    if out == 0 {
                        o[ch * t + i] = val;
                    }
                    let stat = U * (val * val + sq).sqrt() / 3f64.sqrt() + eps_s * abs;
                    outs[out].push((val, U * val.abs() + up * abs, stat));
                }
            }
        }
        // dS, the worst-case weights w (comment of `flash_cases`), and per query Σ_c (dO O)² (D's rounding variance).
        let (mut ds, mut w, mut w_f32s) = (vec![0.0f64; t * t], vec![0.0f64; t * t], vec![0.0f64; t * t]);
        let mut d_sq = vec![0.0f64; t];
        for i in 0..t {
            let d: f64 = (0..c).map(|ch| at(gb, ch, i) * o[ch * t + i]).sum();
            let d_abs: f64 = (0..c).map(|ch| (at(gb, ch, i) * o[ch * t + i]).abs()).sum();
            d_sq[i] = (0..c).map(|ch| (at(gb, ch, i) * o[ch * t + i]).powi(2)).sum();
            for j in 0..t {
                let pij = p[i * t + j];
                let (dp, dp_abs) = (0..c).fold((0.0, 0.0), |(s, a), ch| {
                    let pr = at(gb, ch, i) * at(vb, ch, j);
                    (s + pr, a + pr.abs())
                });
                ds[i * t + j] = pij * (dp - d);
                // The f32 parts (P's ε_P, D's and dP's sums): worst case, and the statistical size.
                let w_f32 = eps_p * ds[i * t + j].abs() + pij * f32_c * (d_abs + dp_abs);
                w_f32s[i * t + j] = eps_s * ds[i * t + j].abs() + pij * f32_s * (d_abs + dp_abs);
                w[i * t + j] = U * ds[i * t + j].abs() + pij * U * d_abs + w_f32;
            }
        }
        // dQ (rows = queries, sum over keys of K) and dK (rows = keys, sum over queries of Q).
        for ch in 0..c {
            for i in 0..t {
                for (out, x) in [(2, kb), (3, qb)] {
                    let (mut val, mut worst, mut f32_part, mut sq_ds, mut sq_d) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    let mut pk = 0.0;
                    for j in 0..t {
                        let (e, xj) = if out == 2 { (i * t + j, at(x, ch, j)) } else { (j * t + i, at(x, ch, j)) };
                        val += ds[e] * xj;
                        worst += w[e] * xj.abs();
                        f32_part += w_f32s[e] * xj.abs();
                        sq_ds += (ds[e] * xj).powi(2);
                        if out == 2 {
                            pk += p[e] * xj;
                        } else {
                            sq_d += (p[e] * xj).powi(2) * d_sq[j];
                        }
                    }
                    if out == 2 {
                        sq_d = pk * pk * d_sq[i];
                    }
                    let val = sc * val;
                    let stat = U * (val * val + sc * sc * (sq_ds + sq_d)).sqrt() / 3f64.sqrt() + sc * f32_part;
                    outs[out].push((val, U * val.abs() + sc * worst, stat));
                }
            }
        }
    }
    let worst = |out: &[(f64, f64, f64)]| {
        let rms = (out.iter().map(|(x, _, _)| x * x).sum::<f64>() / out.len().max(1) as f64).sqrt();
        out.iter().map(|(x, w, s)| w.min(6.0 * s) / (x.abs() + rms).max(1e-30)).fold(0.0, f64::max)
    };
    let tol = |ws: &[f64]| (1.1 * ws.iter().copied().fold(0.0, f64::max)) as f32;
    (tol(&[worst(&outs[0])]), tol(&[worst(&outs[1]), worst(&outs[2]), worst(&outs[3])]))
}

/// Round to bf16 and back (what the kernels read, so the CPU reference sees the same values).
fn bf16_rounded(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| bf16::from_f32(x).to_f32()).collect()
}

/// The CPU row log-sum-exp [B, T] of scale · QᵀK, in f64.
fn lse_reference(q: &[f32], k: &[f32], b: usize, c: usize, t: usize) -> Vec<f32> {
    let scale = 1.0 / (c as f64).sqrt();
    let mut out = Vec::with_capacity(b * t);
    for bi in 0..b {
        let (qb, kb) = (&q[bi * c * t..][..c * t], &k[bi * c * t..][..c * t]);
        for i in 0..t {
            let s: Vec<f64> =
                (0..t).map(|j| (0..c).map(|ch| qb[ch * t + i] as f64 * kb[ch * t + j] as f64).sum::<f64>() * scale).collect();
            let m = s.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
            out.push((m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln()) as f32);
        }
    }
    out
}

/// bf16 values as f32 host data, in a tensor on `d`.
fn from_bf16(v: &[bf16], shape: &[usize], d: &Device) -> Result<Tensor> {
    Tensor::from_vec(v.iter().map(|x| x.to_f32()).collect(), shape)?.to_device(d)
}

/// [O, lse] (or [dQ, dK, dV] with `backward`) of the case's bf16-rounded inputs: the f32 CPU reference on the CPU,
/// the fused kernels on a CUDA device (outputs brought back as f32 tensors on that device).
fn flash_run(d: &Device, b: usize, c: usize, t: usize, qk: f32, backward: bool) -> Result<Vec<Tensor>> {
    let s = [b, c, t];
    let [q, k, v, g] = flash_inputs(b, c, t, qk);
    match d {
        Device::Cpu => {
            let tensor = |x: &[f32]| Tensor::from_vec(x.to_vec(), &s);
            let (qt, kt, vt) = (tensor(&q)?, tensor(&k)?, tensor(&v)?);
            let (o, p) = attention::forward(&qt, &kt, &vt)?;
            if !backward {
                return Ok(vec![o, Tensor::from_vec(lse_reference(&q, &k, b, c, t), &[b, t])?]);
            }
            let (dq, dk, dv) = attention::backward(&qt, &kt, &vt, &p, &tensor(&g)?, [true; 3])?;
            Ok(vec![dq.expect("dq"), dk.expect("dk"), dv.expect("dv")])
        }
        Device::Cuda(be) => {
            let up = |x: &[f32]| -> Result<CudaSlice<bf16>> {
                let h: Vec<bf16> = x.iter().map(|&x| bf16::from_f32(x)).collect();
                Ok(be.stream().clone_htod(&h)?)
            };
            let (qd, kd, vd) = (up(&q)?, up(&k)?, up(&v)?);
            let (o, lse) = flash::flash_forward_bf16(be, &qd, &kd, &vd, b, c, t)?;
            if !backward {
                let lse = be.stream().clone_dtoh(&lse)?;
                return Ok(vec![from_bf16(&be.stream().clone_dtoh(&o)?, &s, d)?, Tensor::from_vec(lse, &[b, t])?.to_device(d)?]);
            }
            let (dq, dk, dv) = flash::flash_backward_bf16(be, &qd, &kd, &vd, &o, &lse, &up(&g)?, b, c, t)?;
            [dq, dk, dv].iter().map(|x| from_bf16(&be.stream().clone_dtoh(x)?, &s, d)).collect()
        }
    }
}

/// q = 0: every score is 0, P = 1/T exactly (T a power of two), and with v and dO small integers the kernels' f32
/// sums are exact. Forward: O = (Σ_j v_cj) / T must equal the f64 row mean rounded once to bf16, bit for bit.
/// Backward (`backward`): the recomputed P = exp(0 − lse) with lse = ln T in f32 is 1/T to ~2⁻²², which rounds to
/// exactly 1/T in bf16 before the dV product, so dV = (Σ_i dO_ci) / T bit for bit too; dK = Σ_i dS Q / √C = 0
/// exactly (q = 0). (dQ has no exact value here: dS = P (dP − D) carries f32 roundings.) Outputs [O] or [dK, dV].
fn flash_exact(d: &Device, b: usize, c: usize, t: usize, backward: bool) -> Result<Vec<Tensor>> {
    let s = [b, c, t];
    let k = bf16_rounded(input(&s, 2, &Device::Cpu)?.scale(3.0)?.to_vec()?);
    // Integers in [-8, 8].
    let ints = |seed| -> Result<Vec<f32>> {
        Ok(input(&s, seed, &Device::Cpu)?.to_vec()?.iter().map(|x| (x * 8.0).round()).collect())
    };
    let (v, g) = (ints(3)?, ints(4)?);
    match d {
        Device::Cpu => {
            // Each (b, c) row's mean over the tokens, rounded once to bf16, at every token.
            let mean = |x: &[f32]| -> Result<Tensor> {
                let m = x.chunks(t).flat_map(|row| {
                    let m = row.iter().map(|&x| x as f64).sum::<f64>() / t as f64;
                    std::iter::repeat_n(bf16::from_f64(m).to_f32(), t)
                });
                Tensor::from_vec(m.collect(), &s)
            };
            if backward {
                Ok(vec![Tensor::zeros(&s, d)?, mean(&g)?])
            } else {
                Ok(vec![mean(&v)?])
            }
        }
        Device::Cuda(be) => {
            let up = |x: &[f32]| -> Result<CudaSlice<bf16>> {
                let h: Vec<bf16> = x.iter().map(|&x| bf16::from_f32(x)).collect();
                Ok(be.stream().clone_htod(&h)?)
            };
            let (q, k, v) = (up(&vec![0.0; b * c * t])?, up(&k)?, up(&v)?);
            let (o, lse) = flash::flash_forward_bf16(be, &q, &k, &v, b, c, t)?;
            if !backward {
                return Ok(vec![from_bf16(&be.stream().clone_dtoh(&o)?, &s, d)?]);
            }
            let (_, dk, dv) = flash::flash_backward_bf16(be, &q, &k, &v, &o, &lse, &up(&g)?, b, c, t)?;
            [dk, dv].iter().map(|x| from_bf16(&be.stream().clone_dtoh(x)?, &s, d)).collect()
        }
    }
}

/// The fused bf16 kernels at one shape, for `benches/kernels_cuda.rs` (the slice-level functions are crate-private):
/// bf16 q, k, v, dO [B, C, T] on the device and the forward's out and lse.
pub struct FlashBench {
    be: Arc<CudaBackend>,
    inputs: [CudaSlice<bf16>; 4],
    out: CudaSlice<bf16>,
    lse: CudaSlice<f32>,
    shape: [usize; 3],
}

impl FlashBench {
    /// Deterministic inputs (as the selftest's) of shape [b, c, t] on the CUDA device `d`, and one forward.
    pub fn new(d: &Device, b: usize, c: usize, t: usize) -> Result<FlashBench> {
        let Device::Cuda(be) = d else { return Err(Error::msg("FlashBench needs a CUDA device")) };
        let up = |seed: u32| -> Result<CudaSlice<bf16>> {
            let x = input(&[b, c, t], seed, &Device::Cpu)?.to_vec()?;
            Ok(be.stream().clone_htod(&x.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>())?)
        };
        let inputs = [up(1)?, up(2)?, up(3)?, up(4)?];
        let (out, lse) = flash::flash_forward_bf16(be, &inputs[0], &inputs[1], &inputs[2], b, c, t)?;
        Ok(FlashBench { be: be.clone(), inputs, out, lse, shape: [b, c, t] })
    }

    /// One fused forward (outputs dropped).
    pub fn forward(&self) -> Result<()> {
        let ([q, k, v, _], [b, c, t]) = (&self.inputs, self.shape);
        flash::flash_forward_bf16(&self.be, q, k, v, b, c, t).map(drop)
    }

    /// One fused backward (dq, dk, dv dropped).
    pub fn backward(&self) -> Result<()> {
        let ([q, k, v, g], [b, c, t]) = (&self.inputs, self.shape);
        flash::flash_backward_bf16(&self.be, q, k, v, &self.out, &self.lse, g, b, c, t).map(drop)
    }
}
