//! ddpm-cuda: Denoising Diffusion Probabilistic Models (Ho et al. 2020) on a small Rust tensor engine with a CPU
//! reference backend and hand-written CUDA kernels. Layers, bottom up, each using only those below it:
//! error, data → backend (CPU maps, CUDA buffers, the typed kernel layer, GEMM, device sums) → tensor → rng →
//! autograd → ops (one folder per op), optim → nn → diffusion, config → checkpoint, diffusers, eval →
//! train/sample → bench, selftest → CLI (see docs/ARCHITECTURE.md).

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod diffusers;
pub mod diffusion;
pub mod dist;
pub mod error;
pub mod eval;
pub mod nn;
pub mod npy;
pub mod ops;
pub mod optim;
pub mod report;
pub mod rng;
pub mod sample;
pub mod sample_store;
pub mod selftest;
pub mod tensor;
pub mod tensorboard;
pub mod train;

pub use autograd::{Grads, Tape, Var};

/// Every kernel the Rust side declares (the backend's, each op's CUDA arm, the optimizer's, the RNG's): what the
/// unit test of `backend::kernels` checks against the compiled PTX.
pub fn declared_kernels() -> Vec<backend::kernels::KernelSig> {
    let groups = [
        backend::kernels::KERNELS,
        backend::cuda_gemm_bf16::KERNELS,
        ops::conv2d::tc::KERNELS,
        ops::attention::flash::KERNELS,
        ops::attention::UNFUSED_BF16_KERNELS,
        optim::cuda::KERNELS,
        rng::KERNELS,
        diffusion::graphed::KERNELS,
    ];
    groups.into_iter().chain(ops::KERNELS.iter().copied()).flatten().copied().collect()
}
pub use backend::{DType, Device};
pub use error::{Error, Result};
pub use tensor::Tensor;
