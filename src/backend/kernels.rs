//! The typed kernel layer: every `extern "C"` kernel of `kernels/*.cu` is declared once on the Rust side, with its
//! parameters' types, through [`kernels!`](crate::backend::kernels::kernels). A declaration becomes a function
//! that looks the kernel up, checks that every device buffer it is handed lives on the launching backend (an
//! [`Error::DeviceMismatch`] naming the kernel otherwise), pushes the arguments in order and launches:
//!
//! ```ignore
//! kernels! {
//!     /// y = SiLU(x), one thread per element.
//!     fn silu_forward(x: &CudaStorage, y: &mut CudaStorage, n: i32);
//! }
//! silu_forward(be, grid_1d(n), x, &mut y, n_i)?;
//! ```
//!
//! A wrong argument type or count is a compile error at the call. A misspelled kernel name, or a declaration whose
//! parameters disagree with the `.cu` signature, fails the unit test below: it parses the PTX that build.rs
//! embedded (with tools/cuda-sim's parser) and checks every declared kernel exists there with the same parameter
//! count, sizes and float/integer classes, and that every kernel in the PTX is declared.
//!
//! The declarations live beside their callers (an op's `cuda.rs`, `optim/cuda.rs`, `rng.rs`, and here for the
//! backend's own GEMM, reduction and tensor kernels); each `kernels!` block also yields a `KERNELS` table, and
//! `crate::declared_kernels` collects the tables for the test.

use cudarc::driver::{CudaSlice, CudaViewMut, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg};
use half::bf16;

use super::cuda::{CudaBackend, CudaStorage};
use crate::{Error, Result};

/// One declared kernel: its name and, per parameter, (bytes, is a float).
#[derive(Clone, Copy, Debug)]
pub struct KernelSig {
    pub name: &'static str,
    pub params: &'static [(usize, bool)],
}

/// A value a kernel takes: how it is pushed, and the PTX parameter it must match.
pub trait KernelArg {
    /// Bytes of the PTX parameter (8 for every pointer).
    const SIZE: usize;
    /// Whether the PTX parameter is `.f32` / `.f64`.
    const FLOAT: bool = false;
    /// Push this argument (after checking its device against `be`'s).
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()>;
}

/// `Error::DeviceMismatch` unless a buffer on device `ordinal` may go to a kernel launched on `be`.
fn check(be: &CudaBackend, ordinal: usize, kernel: &'static str) -> Result<()> {
    if ordinal == be.ordinal() {
        Ok(())
    } else {
        Err(Error::DeviceMismatch { op: kernel, devices: format!("cuda:{}, cuda:{ordinal}", be.ordinal()) })
    }
}

/// A `&CudaStorage` argument is an f32 buffer: a bf16 one is an error naming the kernel.
impl KernelArg for &CudaStorage {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()> {
        check(be, self.backend().ordinal(), kernel)?;
        b.arg(self.f32(kernel)?);
        Ok(())
    }
}

impl KernelArg for &mut CudaStorage {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()> {
        check(be, self.backend().ordinal(), kernel)?;
        b.arg(self.f32_mut(kernel)?);
        Ok(())
    }
}

impl<T> KernelArg for &CudaSlice<T> {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()> {
        check(be, self.ordinal(), kernel)?;
        b.arg(*self);
        Ok(())
    }
}

impl<T> KernelArg for &mut CudaSlice<T> {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()> {
        check(be, self.ordinal(), kernel)?;
        b.arg(&mut **self);
        Ok(())
    }
}

/// A device pointer argument: what `Option` may wrap.
pub trait PointerArg: KernelArg {}
impl PointerArg for &CudaStorage {}
impl PointerArg for &mut CudaStorage {}
impl<T> PointerArg for &CudaSlice<T> {}
impl<T> PointerArg for &mut CudaSlice<T> {}

/// A nullable operand or output: `None` passes a null pointer (the kernel skips it).
impl<A: PointerArg> KernelArg for Option<A> {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, be: &CudaBackend, b: &mut LaunchArgs<'a>, kernel: &'static str) -> Result<()> {
        static NULL: u64 = 0;
        match self {
            Some(a) => a.push(be, b, kernel),
            None => {
                b.arg(&NULL);
                Ok(())
            }
        }
    }
}

/// A sub-range of a buffer (the reduction's partial sums); views carry no device to check.
impl<T> KernelArg for &mut CudaViewMut<'_, T> {
    const SIZE: usize = 8;
    fn push<'a>(&'a mut self, _: &CudaBackend, b: &mut LaunchArgs<'a>, _: &'static str) -> Result<()> {
        b.arg(&mut **self);
        Ok(())
    }
}

macro_rules! scalar_arg {
    ($($t:ty => $float:expr),*) => {$(
        impl KernelArg for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const FLOAT: bool = $float;
            fn push<'a>(&'a mut self, _: &CudaBackend, b: &mut LaunchArgs<'a>, _: &'static str) -> Result<()> {
                b.arg(&*self);
                Ok(())
            }
        }
    )*};
}
scalar_arg!(i32 => false, u64 => false, i64 => false, f32 => true, f64 => true, ConvGeom => false);

/// `struct Conv2dGeom` of kernels/conv2d.cu, field for field (passed by value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: i32,
    pub cin: i32,
    pub h: i32,
    pub w: i32,
    pub cout: i32,
    pub kh: i32,
    pub kw: i32,
    pub ho: i32,
    pub wo: i32,
    pub stride: i32,
    pub pad_top: i32,
    pub pad_left: i32,
}

// SAFETY: a plain #[repr(C)] struct of i32s, identical to the kernel's parameter type.
unsafe impl DeviceRepr for ConvGeom {}

/// Launch config for one thread per element (256-thread blocks).
pub fn grid_1d(n: usize) -> LaunchConfig {
    const BLOCK: u32 = 256;
    let blocks = (n as u32).div_ceil(BLOCK).max(1);
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// `grid` blocks of `threads` threads, no dynamic shared memory.
pub fn blocks(grid: (u32, u32, u32), threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// An element count as the kernels' `int`, or a shape error naming `op`.
pub fn int(op: &'static str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::shape(op, format!("{n} is too large for the CUDA kernels' int")))
}

/// Declare kernels: `fn name(arg: Type, ...);` per `extern "C"` kernel, in the `.cu` parameter order. Each becomes
/// `pub fn name(be: &Arc<CudaBackend>, cfg: LaunchConfig, arg: Type, ...) -> Result<()>`, and the block defines
/// `pub const KERNELS: &[KernelSig]`.
macro_rules! kernels {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?);)*) => {
        $(
            $(#[$doc])*
            #[allow(clippy::too_many_arguments, dead_code)]
            pub fn $name(
                be: &std::sync::Arc<$crate::backend::cuda::CudaBackend>,
                cfg: cudarc::driver::LaunchConfig,
                $(mut $arg: $ty),*
            ) -> $crate::Result<()> {
                const NAME: &str = stringify!($name);
                let f = be.function(NAME)?;
                let mut args = be.stream().launch_builder(&f);
                $($crate::backend::kernels::KernelArg::push(&mut $arg, be, &mut args, NAME)?;)*
                // SAFETY: the declaration matches the kernel's parameters (count, sizes and classes: checked
                // against the PTX by the unit test of backend/kernels.rs), and each caller sizes its buffers and
                // grid for what the kernel reads and writes (said at each call).
                $crate::backend::kernels::launched(NAME, unsafe { cudarc::driver::LaunchArgs::launch(&mut args, cfg) })
            }
        )*
        /// The kernels declared here (checked against the compiled PTX by a unit test).
        #[allow(dead_code)]
        pub const KERNELS: &[$crate::backend::kernels::KernelSig] = &[$(
            $crate::backend::kernels::KernelSig {
                name: stringify!($name),
                params: &[$((
                    <$ty as $crate::backend::kernels::KernelArg>::SIZE,
                    <$ty as $crate::backend::kernels::KernelArg>::FLOAT,
                )),*],
            },
        )*];
    };
}
pub(crate) use kernels;

/// A launch's driver result, with the kernel's name on a failure.
pub fn launched<T>(name: &'static str, r: std::result::Result<T, cudarc::driver::DriverError>) -> Result<()> {
    r.map(|_| ()).map_err(|e| Error::Cuda(format!("{name}: {e:?}")))
}

// The backend's own kernels: the elementwise maps `Tensor` uses, GEMM and the two-stage reduction.
kernels! {
    /// z = a + b, n elements.
    fn add_f32(a: &CudaStorage, b: &CudaStorage, z: &mut CudaStorage, n: i32);
    /// y = s · x, n elements.
    fn elementwise_scale_f32(x: &CudaStorage, y: &mut CudaStorage, s: f32, n: i32);
    /// Batched row-major C = alpha · op(A) op(B) + beta · C (see backend/cuda_gemm.rs).
    fn gemm_batched_f32(
        a: &CudaSlice<f32>, b: &CudaSlice<f32>, c: &mut CudaSlice<f32>, m: i32, n: i32, k: i32, lda: i32, ldb: i32,
        ldc: i32, ta: i32, tb: i32, stride_a: i64, stride_b: i64, stride_c: i64, alpha: f32, beta: f32,
    );
    /// Per-block f64 partial sums of x (mode: Σx, Σ(x−y)², Σx²).
    fn reduce_partial_f32(x: &CudaStorage, y: &CudaStorage, n: i32, mode: i32, partial: &mut CudaViewMut<'_, f64>);
    /// y = bf16(x) (round to nearest even), n elements.
    fn cast_f32_to_bf16(x: &CudaSlice<f32>, y: &mut CudaSlice<bf16>, n: i32);
    /// y = f32(x) (exact), n elements.
    fn cast_bf16_to_f32(x: &CudaSlice<bf16>, y: &mut CudaSlice<f32>, n: i32);
    /// z = a + b in f32, rounded to bf16; n elements.
    fn add_bf16(a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, z: &mut CudaSlice<bf16>, n: i32);
    /// y = s · x in f32, rounded to bf16; n elements.
    fn elementwise_scale_bf16(x: &CudaSlice<bf16>, y: &mut CudaSlice<bf16>, s: f32, n: i32);
    /// One block: out[0] = scale · Σ partial, total[0] = Σ partial.
    fn reduce_finish_f64(partial: &CudaSlice<f64>, parts: i32, scale: f64, out: &mut CudaStorage,
        total: &mut CudaSlice<f64>);
    /// Grid (len, splits): split s of channel j's sum into dst[j · splits + s] (see `cuda_reduce::bias_sum`).
    fn reduce_bias_partial_f32(g: &CudaStorage, dst: &mut CudaStorage, n: i32, inner: i32, len: i32, chunk: i64);
    /// out[j] = Σ_s partial[j · splits + s] in split order, one thread per channel.
    fn reduce_bias_finish_f32(partial: &CudaStorage, out: &mut CudaStorage, len: i32, splits: i32);
}

/// What disagrees between the declarations and a PTX module (empty when they agree): a declared kernel missing from
/// the PTX, a different parameter count, size or float/integer class, a kernel declared twice, and a PTX kernel
/// without a declaration.
#[cfg(test)]
fn mismatches(module: &cuda_sim::ir::Module, declared: &[KernelSig]) -> Vec<String> {
    use cuda_sim::ir::Ty;
    let mut out = Vec::new();
    for (i, k) in declared.iter().enumerate() {
        if declared[..i].iter().any(|d| d.name == k.name) {
            out.push(format!("{} is declared twice", k.name));
        }
        let Some(entry) = module.kernels.iter().find(|e| e.name == k.name) else {
            out.push(format!("{} is declared but not in the compiled kernels", k.name));
            continue;
        };
        if entry.params.len() != k.params.len() {
            out.push(format!(
                "{}: {} parameters declared, the kernel has {}",
                k.name,
                k.params.len(),
                entry.params.len()
            ));
            continue;
        }
        for (j, (p, &(size, float))) in entry.params.iter().zip(k.params).enumerate() {
            let p_float = matches!(p.ty, Ty::F32 | Ty::F64);
            if p.size as usize != size || p_float != float {
                out.push(format!(
                    "{} parameter {j} ({}): declared {size} bytes{}, the kernel has {} bytes of {:?}",
                    k.name,
                    p.name,
                    if float { " float" } else { "" },
                    p.size,
                    p.ty
                ));
            }
        }
    }
    for e in &module.kernels {
        if !declared.iter().any(|k| k.name == e.name) {
            out.push(format!("{} is in the compiled kernels but not declared", e.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PTX text of the embedded fatbin (build.rs keeps it uncompressed), or `None` for a build without nvcc.
    /// The cubins carry NUL-separated PTX fragments too; the PTX entry is the one long NUL-terminated text.
    fn embedded_ptx() -> Option<String> {
        let fatbin = crate::backend::cuda::fatbin();
        let texts = fatbin.windows(8).enumerate().filter(|(_, w)| *w == b".version").map(|(start, _)| {
            let len = fatbin[start..].iter().position(|&b| b == 0).unwrap_or(fatbin.len() - start);
            &fatbin[start..start + len]
        });
        let ptx = texts.max_by_key(|t| t.len())?;
        Some(String::from_utf8_lossy(ptx).into_owned())
    }

    #[test]
    fn every_declaration_matches_its_compiled_kernel() {
        let Some(ptx) = embedded_ptx() else {
            assert!(!crate::backend::cuda::kernels_built(), "the fatbin has kernels but no readable PTX");
            eprintln!("skipped: this build has no CUDA kernels (nvcc was not found)");
            return;
        };
        let module = cuda_sim::parse::parse(&ptx).expect("the embedded PTX parses");
        assert!(module.kernels.len() > 40, "only {} kernels in the embedded PTX", module.kernels.len());
        let declared = crate::declared_kernels();
        assert_eq!(mismatches(&module, &declared), Vec::<String>::new());
    }

    #[test]
    fn the_check_catches_a_wrong_name_count_size_or_class() {
        let ptx = ".version 9.0\n.target sm_90\n.address_size 64\n\n.visible .entry k(\n\t.param .u64 k_param_0,\n\t\
                   .param .f32 k_param_1,\n\t.param .u32 k_param_2\n)\n{\n\tret;\n}\n";
        let module = cuda_sim::parse::parse(ptx).expect("the test PTX parses");
        let sig = |name, params| KernelSig { name, params };
        let good: &[(usize, bool)] = &[(8, false), (4, true), (4, false)];
        assert!(mismatches(&module, &[sig("k", good)]).is_empty());
        // A misspelled name: declared-but-missing and compiled-but-undeclared.
        assert_eq!(mismatches(&module, &[sig("kk", good)]).len(), 2);
        // One parameter too few.
        assert_eq!(mismatches(&module, &[sig("k", &good[..2])]).len(), 1);
        // An i32 where the kernel takes a float, a u64 where it takes an int.
        assert_eq!(mismatches(&module, &[sig("k", &[(8, false), (4, false), (8, false)])]).len(), 2);
        // Declared twice.
        assert_eq!(mismatches(&module, &[sig("k", good), sig("k", good)]).len(), 1);
    }

    #[test]
    fn argument_types_have_the_kernels_sizes() {
        assert_eq!(<&CudaStorage as KernelArg>::SIZE, 8);
        assert_eq!(<Option<&mut CudaStorage> as KernelArg>::SIZE, 8);
        assert_eq!((<i32 as KernelArg>::SIZE, <i32 as KernelArg>::FLOAT), (4, false));
        assert_eq!((<f32 as KernelArg>::SIZE, <f32 as KernelArg>::FLOAT), (4, true));
        assert_eq!((<f64 as KernelArg>::SIZE, <u64 as KernelArg>::SIZE), (8, 8));
        assert_eq!(<ConvGeom as KernelArg>::SIZE, 12 * 4);
    }
}
