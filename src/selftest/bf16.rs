//! Helpers of the bf16 selftest cases (the tensor-core conv and GEMM): rounding, uploads of bf16 operands, device
//! results back as tensors, and the derived tolerances.
//!
//! The oracle is the f32 CPU reference run on the bf16-rounded inputs, so a case measures only the kernel's own
//! rounding. Derivation of the tolerances, for the selftest metric |ref − dev| / (|ref| + rms(ref)):
//! - An output that is an f32-accumulated sum of K products of bf16 values: every product is exact in f32 (8 × 8
//!   significant bits), and both the kernel and the reference sum them in f32 in different orders, each with an
//!   error of at most γ_K · Σ|aᵢbᵢ| ≤ K · 2⁻²⁴ · Σ|aᵢbᵢ|. The case inputs are spread evenly over [−1, 1), so
//!   Σ|aᵢbᵢ| ≈ K/4 and the output's rms ≈ √K/3: Σ|aᵢbᵢ| / rms ≈ 0.75 √K. Both sides together:
//!   2 · K · 2⁻²⁴ · 0.75 √K = 1.5 · K^1.5 · 2⁻²⁴ ([`tol_f32_sum`]). (The worst case; rounding errors of random
//!   sign make the typical error about √K times smaller.)
//! - A bf16 output adds its one rounding to nearest even. bf16 has 8 significant bits (7 stored), so the spacing
//!   of values in [2ᵉ, 2ᵉ⁺¹) is 2ᵉ⁻⁷ and the rounding error is at most 2ᵉ⁻⁸ ≤ 2⁻⁸ |value| (unit roundoff 2⁻⁸; the
//!   contract's "2⁻⁹" would be f16-like, and real errors of 2.7e-3 > 2⁻⁹ occur) ([`tol_bf16_out`]).
//! - The fused conv (`conv2d_fused`: conv + bias + add_nc[n, c] + residual, conv2d/check.rs): the epilogue adds
//!   the three operands to the f32 sum of K products before the one rounding, so y is an f32 sum of K + 3 terms of
//!   the products' size (operands in [−1, 1), as the products), rounded once: `tol_bf16_out(K + 3)`, as the
//!   tensor-core kernel's own case. Its backward: dx as the plain conv's (Cout·kh·kw products, rounded), dW and db
//!   f32 sums of N·Ho·Wo terms, d add_nc of Ho·Wo (`tol_f32_sum`), d residual dy copied (exact). The case is judged
//!   with the largest of its outputs' tolerances.
//! - Exact cases: small integers in {−2, …, 2} (exact in bf16) whose products and sums stay below 2²⁴ are exact in
//!   f32 in any order, so the device must match the reference bit for bit (tolerance 0), after the reference is
//!   rounded to bf16 like the kernel's output where the output is bf16.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::Storage;
use crate::selftest::input;
use crate::{Device, Error, Result, Tensor};

/// Tolerance of an f32 output that sums `k` exact products (see the module docs).
pub(crate) fn tol_f32_sum(k: usize) -> f32 {
    1.5 * (k as f32).powf(1.5) * 2f32.powi(-24)
}

/// bf16's unit roundoff (see the module docs): one final rounding of an otherwise f32-exact output costs at most
/// this under the selftest metric, so a bf16 case's tolerance is `BF16_ROUND` + the f32 case's own tolerance for
/// its maths (written at each case). The CPU reference runs on the same bf16-rounded inputs (`input_bf16`,
/// `param_bf16`, `host_input`), so only the kernel's own rounding is measured.
pub(crate) const BF16_ROUND: f32 = 1.0 / 256.0;

/// Tolerance of a bf16 output that sums `k` exact products: the sums' error plus the output's rounding.
pub(crate) fn tol_bf16_out(k: usize) -> f32 {
    BF16_ROUND + tol_f32_sum(k)
}

/// Round to the nearest bf16 (ties to even), as f32.
pub(crate) fn round_bf16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

/// The selftest's deterministic inputs on the host: in [−1, 1) rounded to bf16, or (`exact`) small integers in
/// {−2, …, 2}.
pub(crate) fn host_input(shape: &[usize], seed: u32, exact: bool) -> Result<Vec<f32>> {
    let v = input(shape, seed, &Device::Cpu)?.to_vec()?;
    Ok(if exact { v.iter().map(|x| (x * 2.4).round()).collect() } else { round_bf16(&v) })
}

/// The CUDA backend of a device, or an error naming the case.
pub(crate) fn backend(d: &Device, what: &str) -> Result<Arc<CudaBackend>> {
    match d {
        Device::Cuda(b) => Ok(b.clone()),
        Device::Cpu => Err(Error::msg(format!("{what}: not a CUDA device"))),
    }
}

pub(crate) fn upload_bf16(be: &Arc<CudaBackend>, v: &[f32]) -> Result<CudaSlice<bf16>> {
    let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
    Ok(be.stream().clone_htod(&h)?)
}

pub(crate) fn upload_f32(be: &Arc<CudaBackend>, v: &[f32]) -> Result<CudaSlice<f32>> {
    Ok(be.stream().clone_htod(v)?)
}

/// A bf16 device result as an f32 tensor on the same device (its values widened exactly; the copy through the
/// host only changes the storage type, the kernels' outputs are unchanged).
pub(crate) fn bf16_result(be: &Arc<CudaBackend>, s: &CudaSlice<bf16>, shape: &[usize]) -> Result<Tensor> {
    let v: Vec<f32> = be.stream().clone_dtoh(s)?.iter().map(|x| x.to_f32()).collect();
    Tensor::from_storage(Storage::Cuda(be.upload(&v)?), shape)
}

/// An f32 device result as a tensor (no copy).
pub(crate) fn f32_result(be: &Arc<CudaBackend>, s: CudaSlice<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_storage(Storage::Cuda(CudaStorage::from_slice(s, be)), shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_follow_the_derivation() {
        // K = 27 (the 3-channel input conv): the output rounding dominates.
        assert!((tol_bf16_out(27) - 2f32.powi(-8)).abs() < 2e-5);
        // K = 4608 (512 channels × 9): the worst-case accumulation term, ≈ 1.9e-2.
        assert!((tol_f32_sum(4608) - 1.5 * 312_800.0 * 5.96e-8).abs() < 1e-3);
        // The spacing above 1 is 2⁻⁷: 1 + 2⁻⁸ (a tie) goes to even, 1 + 3·2⁻⁹ up, an error of 2⁻⁹; the largest
        // error, 2⁻⁸ relative, is at a tie just above a power of two.
        assert_eq!(round_bf16(&[1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-9)]), vec![1.0, 1.0 + 2f32.powi(-7)]);
    }

    #[test]
    fn exact_inputs_are_small_integers() {
        let v = host_input(&[1000], 3, true).unwrap();
        assert!(v.iter().all(|x| x.fract() == 0.0 && x.abs() <= 2.0));
        for want in [-2.0, -1.0, 0.0, 1.0, 2.0] {
            assert!(v.contains(&want), "{want} never drawn");
        }
    }
}
