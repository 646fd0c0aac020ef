//! Row-major (batched) GEMM with bf16 operands and f32 accumulation, output bf16 or f32 (the linears and
//! attention projections in bf16; f32 for weight gradients): cuBLAS `cublasGemmStridedBatchedEx` (CUDA_R_16BF
//! inputs, CUBLAS_COMPUTE_32F) when libcublas loads, else the tensor-core tile kernel of kernels/gemm_bf16.cu.
//! The product is described by the same row-major [`Gemm`] as the f32 GEMM (alpha, beta in f32).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::result::gemm_strided_batched_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType_t};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig};
use half::bf16;

use super::cuda::CudaBackend;
use super::cuda_gemm::{Gemm, GemmImpl, KernelArgs, Route};
use super::kernels::{blocks, kernels};
use crate::{Error, Result};

kernels! {
    /// Batched row-major C = alpha · op(A) op(B) + beta · C, bf16 operands and C, f32 accumulation.
    fn gemm_batched_bf16(
        a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, c: &mut CudaSlice<bf16>, m: i32, n: i32, k: i32, lda: i32,
        ldb: i32, ldc: i32, ta: i32, tb: i32, stride_a: i64, stride_b: i64, stride_c: i64, alpha: f32, beta: f32,
    );
    /// The same with an f32 C.
    fn gemm_batched_f32out_bf16(
        a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, c: &mut CudaSlice<f32>, m: i32, n: i32, k: i32, lda: i32,
        ldb: i32, ldc: i32, ta: i32, tb: i32, stride_a: i64, stride_b: i64, stride_c: i64, alpha: f32, beta: f32,
    );
}

/// An output element type of the bf16 GEMM: bf16 or f32.
pub trait GemmOut: DeviceRepr {
    /// cuBLAS's name for it.
    const CUDA_TYPE: cudaDataType_t;
    /// Launch the tile kernel writing this type (arguments as `gemm_batched_bf16`).
    #[allow(clippy::too_many_arguments)]
    fn launch(
        be: &Arc<CudaBackend>,
        cfg: LaunchConfig,
        a: &CudaSlice<bf16>,
        b: &CudaSlice<bf16>,
        c: &mut CudaSlice<Self>,
        dims: [i32; 8],
        strides: [i64; 3],
        alpha: f32,
        beta: f32,
    ) -> Result<()>
    where
        Self: Sized;
}

impl GemmOut for bf16 {
    const CUDA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_16BF;
    fn launch(
        be: &Arc<CudaBackend>,
        cfg: LaunchConfig,
        a: &CudaSlice<bf16>,
        b: &CudaSlice<bf16>,
        c: &mut CudaSlice<bf16>,
        [m, n, k, lda, ldb, ldc, ta, tb]: [i32; 8],
        [sa, sb, sc]: [i64; 3],
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        gemm_batched_bf16(be, cfg, a, b, c, m, n, k, lda, ldb, ldc, ta, tb, sa, sb, sc, alpha, beta)
    }
}

impl GemmOut for f32 {
    const CUDA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_32F;
    fn launch(
        be: &Arc<CudaBackend>,
        cfg: LaunchConfig,
        a: &CudaSlice<bf16>,
        b: &CudaSlice<bf16>,
        c: &mut CudaSlice<f32>,
        [m, n, k, lda, ldb, ldc, ta, tb]: [i32; 8],
        [sa, sb, sc]: [i64; 3],
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        gemm_batched_f32out_bf16(be, cfg, a, b, c, m, n, k, lda, ldb, ldc, ta, tb, sa, sb, sc, alpha, beta)
    }
}

/// Run `g` with bf16 operands on device buffers (checked to be long enough): cuBLAS when it loads, else the
/// tensor-core kernel.
pub fn gemm_bf16<Out: GemmOut>(
    be: &Arc<CudaBackend>,
    g: &Gemm,
    a: &CudaSlice<bf16>,
    b: &CudaSlice<bf16>,
    c: &mut CudaSlice<Out>,
) -> Result<()> {
    gemm_bf16_with(be, g, a, b, c, GemmImpl::Auto)
}

/// [`gemm_bf16`] with the implementation chosen (the selftest runs both).
pub fn gemm_bf16_with<Out: GemmOut>(
    be: &Arc<CudaBackend>,
    g: &Gemm,
    a: &CudaSlice<bf16>,
    b: &CudaSlice<bf16>,
    c: &mut CudaSlice<Out>,
    imp: GemmImpl,
) -> Result<()> {
    let route = g.route("gemm_bf16", [a.len(), b.len(), c.len()], be, imp)?;
    if route == Route::Empty {
        return Ok(());
    }
    if route == Route::Cublas {
        let cfg = g.to_cublas()?;
        let blas = be.blas()?;
        let s = be.stream();
        let (pa, _ra) = a.device_ptr(s);
        let (pb, _rb) = b.device_ptr(s);
        let (pc, _rc) = c.device_ptr_mut(s);
        let (alpha, beta) = (g.alpha, g.beta);
        let (gc, bf) = (&cfg.gemm, cudaDataType_t::CUDA_R_16BF);
        // SAFETY: lens() bounds every matrix the config addresses inside the buffers (checked above); alpha and
        // beta are f32 as CUBLAS_COMPUTE_32F requires; cuBLAS gets the operands swapped (A' = B, B' = A), as in
        // `Gemm::to_cublas`.
        unsafe {
            gemm_strided_batched_ex(
                *blas.handle(),
                gc.transa,
                gc.transb,
                gc.m,
                gc.n,
                gc.k,
                (&alpha) as *const f32 as *const c_void,
                pb as *const c_void,
                bf,
                gc.lda,
                cfg.stride_a,
                pa as *const c_void,
                bf,
                gc.ldb,
                cfg.stride_b,
                (&beta) as *const f32 as *const c_void,
                pc as *mut c_void,
                Out::CUDA_TYPE,
                gc.ldc,
                cfg.stride_c,
                cfg.batch_size,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| Error::Cuda(format!("cuBLAS GemmEx (bf16): {e:?}")))?;
        return Ok(());
    }
    let KernelArgs { dims, strides } = g.kernel_args("gemm_bf16")?;
    let grid = (g.n.div_ceil(64) as u32, g.m.div_ceil(128) as u32, g.batch as u32);
    // As for cuBLAS: every element the kernel touches lies inside the checked lengths.
    Out::launch(be, blocks(grid, 128), a, b, c, dims, strides, g.alpha, g.beta)
}
