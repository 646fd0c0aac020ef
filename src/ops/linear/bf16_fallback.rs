//! STAND-IN for tc-conv's bf16-input, f32-accumulate GEMM (`cuda_gemm::gemm_bf16`, issue 12 item 3), with its
//! signature: the bf16 operands are widened to f32 (exact), the f32 GEMM (cuBLAS or kernels/gemm.cu) runs, and C
//! is stored as `Out` (bf16: rounded to nearest even; f32: as is). At merge, `mod.rs`'s
//! `use bf16_fallback::gemm_bf16` becomes the real one and this file goes.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DeviceRepr};
use half::bf16;

use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::cuda_gemm::{gemm, Gemm, GemmImpl};
use crate::backend::kernels::{cast_f32_to_bf16, grid_1d, int};
use crate::Result;

/// The output types of `gemm_bf16`: f32 (weight gradients) or bf16 (activations).
pub(crate) trait GemmOut: DeviceRepr + Sized {
    /// C's current values as f32 storage (for a GEMM that accumulates onto C).
    fn widen(be: &Arc<CudaBackend>, c: &CudaSlice<Self>) -> Result<CudaStorage>;
    /// Store the f32 result into C.
    fn store(be: &Arc<CudaBackend>, c32: &CudaStorage, c: &mut CudaSlice<Self>) -> Result<()>;
}

impl GemmOut for f32 {
    fn widen(be: &Arc<CudaBackend>, c: &CudaSlice<f32>) -> Result<CudaStorage> {
        be.storage_f32(c)
    }
    fn store(be: &Arc<CudaBackend>, c32: &CudaStorage, c: &mut CudaSlice<f32>) -> Result<()> {
        Ok(be.stream().memcpy_dtod(c32.f32("gemm_bf16")?, c)?)
    }
}

impl GemmOut for bf16 {
    fn widen(be: &Arc<CudaBackend>, c: &CudaSlice<bf16>) -> Result<CudaStorage> {
        be.widen_bf16(c)
    }
    fn store(be: &Arc<CudaBackend>, c32: &CudaStorage, c: &mut CudaSlice<bf16>) -> Result<()> {
        let n = c.len();
        if n > 0 {
            // Reads and writes n elements.
            cast_f32_to_bf16(be, grid_1d(n), c32.f32("gemm_bf16")?, c, int("gemm_bf16", n)?)?;
        }
        Ok(())
    }
}

/// C = alpha · op(A) op(B) + beta · C with bf16 A and B, f32 accumulation, C stored as `Out`.
pub(crate) fn gemm_bf16<Out: GemmOut>(
    be: &Arc<CudaBackend>,
    g: &Gemm,
    a: &CudaSlice<bf16>,
    b: &CudaSlice<bf16>,
    c: &mut CudaSlice<Out>,
) -> Result<()> {
    let (a32, b32) = (be.widen_bf16(a)?, be.widen_bf16(b)?);
    // beta = 0 never reads C (cuBLAS and kernels/gemm.cu alike), so it needs no widening then.
    let mut c32 = if g.beta != 0.0 { Out::widen(be, c)? } else { be.empty(c.len())? };
    gemm(be, g, a32.f32("gemm_bf16")?, b32.f32("gemm_bf16")?, c32.f32_mut("gemm_bf16")?, GemmImpl::Auto)?;
    Out::store(be, &c32, c)
}
