//! One room per op: shapes, CPU reference, CUDA launch and backward rule live together in `ops/<op>.rs`, with its
//! kernels in `kernels/<op>.cu`. Every op takes and returns `Var`s and records its backward on the inputs' tape.

pub mod attention;
pub mod concat;
pub mod conv2d;
pub mod diffusion_step;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod group_norm;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod reduce;
pub mod relu;
pub mod resize;
pub mod silu;
pub mod upsample;

pub use silu::silu;
