//! ddpm-cuda: Denoising Diffusion Probabilistic Models (Ho et al. 2020) on a small Rust tensor engine with a CPU
//! reference backend and hand-written CUDA kernels. Layers, bottom up: tensor → ops → autograd → nn → diffusion →
//! train/sample → CLI (see docs/ARCHITECTURE.md).

pub mod autograd;
pub mod backend;
pub mod data;
pub mod error;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;

pub use autograd::{Grads, Tape, Var};
pub use backend::Device;
pub use error::{Error, Result};
pub use tensor::Tensor;
