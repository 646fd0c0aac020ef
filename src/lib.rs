//! ddpm-cuda: Denoising Diffusion Probabilistic Models (Ho et al. 2020) on a small Rust tensor engine with a CPU
//! reference backend and hand-written CUDA kernels. Layers, bottom up: tensor → ops → autograd → nn → diffusion →
//! train/sample → CLI (see docs/ARCHITECTURE.md).

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod diffusers;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod nn;
pub mod npy;
pub mod ops;
pub mod optim;
pub mod report;
pub mod rng;
pub mod sample;
pub mod selftest;
pub mod tensor;
pub mod tensorboard;
pub mod train;

pub use autograd::{Grads, Tape, Var};
pub use backend::Device;
pub use error::{Error, Result};
pub use tensor::Tensor;
