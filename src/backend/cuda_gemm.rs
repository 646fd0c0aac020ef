//! Row-major (batched) GEMM on the device: cuBLAS when libcublas loads, else the tiled kernel of kernels/gemm.cu.
//! Callers describe the product in row-major terms, as the CPU reference's `cpu::gemm`; `Gemm::to_cublas` turns
//! it into cuBLAS's column-major form (Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, keep each one's transpose flag).

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm as _, GemmConfig, StridedBatchedConfig};
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::cuda::CudaBackend;
use super::kernels::{blocks, gemm_batched_f32};
use crate::{Error, Result};

/// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] for b < batch, every matrix row-major.
/// op(A) is m×k: A is stored m×k (row stride lda) or, when `ta`, k×m. op(B) is k×n: B stored k×n or, when `tb`,
/// n×k. C is m×n with row stride ldc. Matrix b of each operand starts `stride_*` elements after matrix b − 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ta: bool,
    pub tb: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm {
    /// C = op(A)·op(B) for densely stored matrices, one batch item.
    pub fn new(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Gemm {
        Gemm {
            m,
            n,
            k,
            ta,
            tb,
            lda: if ta { m } else { k },
            ldb: if tb { k } else { n },
            ldc: n,
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// `batch` products of densely packed matrices.
    pub fn batched(self, batch: usize) -> Gemm {
        Gemm { batch, ..self }
    }

    /// Accumulate onto C (beta = 1).
    pub fn accumulate(self) -> Gemm {
        Gemm { beta: 1.0, ..self }
    }

    /// Elements each operand must hold.
    pub fn lens(&self) -> [usize; 3] {
        let last = |stride: usize, rows: usize, ld: usize, cols: usize| {
            if self.batch == 0 || rows == 0 || cols == 0 {
                0
            } else {
                (self.batch - 1) * stride + (rows - 1) * ld + cols
            }
        };
        let (ar, ac) = if self.ta { (self.k, self.m) } else { (self.m, self.k) };
        let (br, bc) = if self.tb { (self.n, self.k) } else { (self.k, self.n) };
        [
            last(self.stride_a, ar, self.lda, ac),
            last(self.stride_b, br, self.ldb, bc),
            last(self.stride_c, self.m, self.ldc, self.n),
        ]
    }

    /// The column-major cuBLAS call computing the same product: Cᵀ (n×m, ld ldc) = op(B)ᵀ · op(A)ᵀ, where B's
    /// row-major storage is, read column-major, the transpose of what it holds (so each flag carries over).
    /// Returns the config and whether the operands must be swapped (always: A' = B, B' = A).
    pub fn to_cublas(&self) -> Result<StridedBatchedConfig<f32>> {
        let i = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("gemm: {v} does not fit cuBLAS's int")));
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        Ok(StridedBatchedConfig {
            gemm: GemmConfig {
                transa: op(self.tb),
                transb: op(self.ta),
                m: i(self.n)?,
                n: i(self.m)?,
                k: i(self.k)?,
                alpha: self.alpha,
                lda: i(self.ldb)?,
                ldb: i(self.lda)?,
                beta: self.beta,
                ldc: i(self.ldc)?,
            },
            batch_size: i(self.batch)?,
            stride_a: self.stride_b as i64,
            stride_b: self.stride_a as i64,
            stride_c: self.stride_c as i64,
        })
    }
}

/// Which implementation runs a GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmImpl {
    /// cuBLAS when it loads, else the kernel.
    Auto,
    Cublas,
    Kernel,
}

/// Where a checked GEMM call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// An empty product: nothing to do.
    Empty,
    Cublas,
    Kernel,
}

/// The tile kernels' integer arguments: m, n, k, lda, ldb, ldc, ta, tb, and the batch strides.
pub(crate) struct KernelArgs {
    pub dims: [i32; 8],
    pub strides: [i64; 3],
}

impl Gemm {
    /// Check the buffers' lengths (`what` names the caller in errors) and pick the route for `imp`.
    pub(crate) fn route(&self, what: &str, lens: [usize; 3], be: &CudaBackend, imp: GemmImpl) -> Result<Route> {
        let need = self.lens();
        if lens.iter().zip(need).any(|(&have, need)| have < need) {
            return Err(Error::msg(format!(
                "{what} {self:?}: buffers of {}, {}, {} elements are too short",
                lens[0], lens[1], lens[2]
            )));
        }
        if self.m == 0 || self.n == 0 || self.batch == 0 {
            return Ok(Route::Empty);
        }
        Ok(match imp {
            GemmImpl::Kernel => Route::Kernel,
            GemmImpl::Cublas => Route::Cublas,
            GemmImpl::Auto if be.blas().is_ok() => Route::Cublas,
            GemmImpl::Auto => Route::Kernel,
        })
    }

    /// The kernels' arguments, or an error when a size does not fit their `int`s or the batch their grid.
    pub(crate) fn kernel_args(&self, what: &str) -> Result<KernelArgs> {
        let to_i = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("{what}: {v} does not fit an int")));
        if self.batch > 65535 {
            return Err(Error::msg(format!("{what}: batch {} exceeds the kernel's grid", self.batch)));
        }
        Ok(KernelArgs {
            dims: [
                to_i(self.m)?,
                to_i(self.n)?,
                to_i(self.k)?,
                to_i(self.lda)?,
                to_i(self.ldb)?,
                to_i(self.ldc)?,
                i32::from(self.ta),
                i32::from(self.tb),
            ],
            strides: [self.stride_a as i64, self.stride_b as i64, self.stride_c as i64],
        })
    }
}

/// Run `g` on device buffers (checked to be long enough).
pub fn gemm(
    be: &Arc<CudaBackend>,
    g: &Gemm,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    c: &mut CudaSlice<f32>,
    imp: GemmImpl,
) -> Result<()> {
    match g.route("gemm", [a.len(), b.len(), c.len()], be, imp)? {
        Route::Empty => Ok(()),
        Route::Cublas => {
            let cfg = g.to_cublas()?;
            // SAFETY: lens() bounds every matrix the config addresses inside the buffers (checked by route).
            unsafe { be.blas()?.gemm_strided_batched(cfg, b, a, c) }
                .map_err(|e| Error::Cuda(format!("cuBLAS sgemm: {e:?}")))
        }
        Route::Kernel => {
            let KernelArgs { dims: [m, n, k, lda, ldb, ldc, ta, tb], strides: [sa, sb, sc] } = g.kernel_args("gemm")?;
            let grid = (g.n.div_ceil(64) as u32, g.m.div_ceil(64) as u32, g.batch as u32);
            // As for cuBLAS: every element the kernel touches lies inside the checked lengths.
            gemm_batched_f32(
                be,
                blocks(grid, 256),
                a,
                b,
                c,
                m,
                n,
                k,
                lda,
                ldb,
                ldc,
                ta,
                tb,
                sa,
                sb,
                sc,
                g.alpha,
                g.beta,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-major reference: C = alpha·op(A)·op(B) + beta·C for batch item 0..batch.
    fn row_major(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        for bi in 0..g.batch {
            for i in 0..g.m {
                for j in 0..g.n {
                    let mut s = 0.0;
                    for p in 0..g.k {
                        let av =
                            if g.ta { a[bi * g.stride_a + p * g.lda + i] } else { a[bi * g.stride_a + i * g.lda + p] };
                        let bv =
                            if g.tb { b[bi * g.stride_b + j * g.ldb + p] } else { b[bi * g.stride_b + p * g.ldb + j] };
                        s += av * bv;
                    }
                    let o = &mut c[bi * g.stride_c + i * g.ldc + j];
                    *o = g.alpha * s + g.beta * *o;
                }
            }
        }
    }

    /// cuBLAS's documented semantics, column-major: C = alpha·op(A)·op(B) + beta·C, element (i, j) of a matrix
    /// with leading dimension ld at i + j·ld.
    fn cublas_emulated(cfg: &StridedBatchedConfig<f32>, a: &[f32], b: &[f32], c: &mut [f32]) {
        let g = &cfg.gemm;
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let t = |op: cublasOperation_t| op == cublasOperation_t::CUBLAS_OP_T;
        for bi in 0..cfg.batch_size as usize {
            let (oa, ob, oc) = (bi * cfg.stride_a as usize, bi * cfg.stride_b as usize, bi * cfg.stride_c as usize);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0;
                    for p in 0..k {
                        let av =
                            if t(g.transa) { a[oa + p + i * g.lda as usize] } else { a[oa + i + p * g.lda as usize] };
                        let bv =
                            if t(g.transb) { b[ob + j + p * g.ldb as usize] } else { b[ob + p + j * g.ldb as usize] };
                        s += av * bv;
                    }
                    let o = &mut c[oc + i + j * g.ldc as usize];
                    *o = g.alpha * s + g.beta * *o;
                }
            }
        }
    }

    #[test]
    fn cublas_form_computes_the_row_major_product_for_every_transpose() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let g = Gemm { alpha: 0.5, beta: 1.0, ..Gemm::new(3, 5, 4, ta, tb).batched(2) };
            let [la, lb, lc] = g.lens();
            assert_eq!((la, lb, lc), (24, 40, 30));
            let a: Vec<f32> = (0..la).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..lb).map(|i| (i as f32 * 0.71).cos()).collect();
            let c0: Vec<f32> = (0..lc).map(|i| i as f32 * 0.1).collect();
            let (mut want, mut got) = (c0.clone(), c0);
            row_major(&g, &a, &b, &mut want);
            // cuBLAS gets the operands swapped: A' = B, B' = A.
            cublas_emulated(&g.to_cublas().unwrap(), &b, &a, &mut got);
            for (x, y) in want.iter().zip(&got) {
                assert!((x - y).abs() < 1e-5, "ta {ta} tb {tb}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn lens_cover_strided_batches() {
        // Attention's S = Qᵀ K per item: Q, K are [C, T] (C = 2, T = 3), S is T×T.
        let g = Gemm::new(3, 3, 2, true, false).batched(4);
        assert_eq!(g.lens(), [4 * 6, 4 * 6, 4 * 9]);
        assert_eq!(Gemm::new(0, 3, 2, false, false).lens()[2], 0);
    }
}
