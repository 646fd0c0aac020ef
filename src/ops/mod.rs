//! One folder per op, one layout for all: `ops/<op>/mod.rs` holds the maths, the shapes, the CPU reference and the
//! backward rule (the `Var`-level function that records it on the tape, and `forward`/`backward` on tensors that
//! match on the storage); `ops/<op>/check.rs` its selftest cases; `ops/<op>/cuda.rs` holds the CUDA arm: its kernels' declarations (`kernels!`, the typed
//! launch layer of `backend::kernels`) and the launches, with the kernels themselves in `kernels/<op>.cu`.
//!
//! The registry below is the one line an op adds: it declares the module and, for an op with a CUDA arm, puts its
//! kernel declarations in `KERNELS`, which the PTX unit test checks against the compiled kernels, and its
//! `check.rs` cases (the op's selftest cases) in `CHECKS`, which `selftest` collects, and its benchmark rows in
//! `BENCHES`, which `bench kernels` collects.

use crate::backend::kernels::KernelSig;
use crate::bench::kernels::Row;
use crate::selftest::{Case, Shapes};

macro_rules! ops {
    (cuda: [$($op:ident),* $(,)?], cpu_only: [$($cpu:ident),* $(,)?] $(,)?) => {
        $(pub mod $op;)*
        $(pub mod $cpu;)*
        /// The kernels every op's CUDA arm declares.
        pub(crate) const KERNELS: &[&[KernelSig]] = &[$($op::cuda::KERNELS),*];
        /// Every CUDA op's selftest cases (`ops/<op>/check.rs`), in registry order.
        pub(crate) const CHECKS: &[fn(&mut Vec<Case>, Shapes)] = &[$($op::check::cases),*];
        /// Every CUDA op's benchmark rows (`ops/<op>/check.rs`), in registry order.
        pub(crate) const BENCHES: &[fn(&mut Vec<Row>, usize)] = &[$($op::check::benches),*];
    };
}

ops! {
    // In the order `selftest` runs their cases.
    cuda: [
        conv2d, group_norm, linear, attention, elementwise, silu, concat, upsample, dropout, diffusion_step, loss,
        reduce, pool, resize, relu,
    ],
    cpu_only: [embedding],
}

pub use silu::silu;
