//! One folder per op, one layout for all: `ops/<op>/mod.rs` holds the maths, the shapes, the CPU reference and the
//! backward rule (the `Var`-level function that records it on the tape, and `forward`/`backward` on tensors that
//! match on the storage); `ops/<op>/cuda.rs` holds the CUDA arm: its kernels' declarations (`kernels!`, the typed
//! launch layer of `backend::kernels`) and the launches, with the kernels themselves in `kernels/<op>.cu`.
//!
//! The registry below is the one line an op adds: it declares the module and, for an op with a CUDA arm, puts its
//! kernel declarations in `KERNELS`, which the PTX unit test checks against the compiled kernels.

use crate::backend::kernels::KernelSig;

macro_rules! ops {
    (cuda: [$($op:ident),* $(,)?], cpu_only: [$($cpu:ident),* $(,)?] $(,)?) => {
        $(pub mod $op;)*
        $(pub mod $cpu;)*
        /// The kernels every op's CUDA arm declares.
        pub(crate) const KERNELS: &[&[KernelSig]] = &[$($op::cuda::KERNELS),*];
    };
}

ops! {
    cuda: [
        attention, concat, conv2d, diffusion_step, dropout, elementwise, group_norm, linear, loss, pool, reduce, relu,
        resize, silu, upsample,
    ],
    cpu_only: [embedding],
}

pub use silu::silu;
