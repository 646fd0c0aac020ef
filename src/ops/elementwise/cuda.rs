//! CUDA launches for the elementwise ops (kernels in kernels/elementwise.cu). Covered: same-shape operands, and
//! one operand broadcast as a "bias" (its shape is [1.., full.., 1..] against the other's full shape: the
//! [N,C,1,1] time embedding, a [C,1,1] vector, a scalar). Other broadcasts return `Unsupported`.

use super::{BinaryOp, Plan};
use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{add_f32, grid_1d, kernels};
use crate::{Error, Result};

// add_f32 and elementwise_scale_f32 are the backend's (Tensor::add and Tensor::scale use them too).
kernels! {
    /// z = a · b, n elements.
    fn mul_f32(a: &CudaStorage, b: &CudaStorage, z: &mut CudaStorage, n: i32);
    /// z = a − b, n elements.
    fn elementwise_sub_f32(a: &CudaStorage, b: &CudaStorage, z: &mut CudaStorage, n: i32);
    /// y = x + s, n elements.
    fn elementwise_add_scalar_f32(x: &CudaStorage, y: &mut CudaStorage, s: f32, n: i32);
    /// y = big ∘ small[(i / inner) % small_len] (op: 0 add, 1 big − small, 2 small − big, 3 mul).
    fn elementwise_bcast_f32(
        big: &CudaStorage, small: &CudaStorage, y: &mut CudaStorage, n: i32, inner: i32, small_len: i32, op: i32,
    );
}

fn unsupported() -> Error {
    Error::Unsupported { op: "general broadcast (only same-shape or bias-like operands)", device: "cuda".into() }
}

/// Kernel sizes are `int`: refuse tensors past 2³¹ elements instead of wrapping.
fn as_i32(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::msg(format!("elementwise: {n} elements is too many for the CUDA kernels")))
}

pub(super) fn binary(
    op: BinaryOp,
    a: &CudaStorage,
    b: &CudaStorage,
    a_shape: &[usize],
    b_shape: &[usize],
    out: &[usize],
) -> Result<CudaStorage> {
    let be = a.backend();
    if a_shape == b_shape {
        let kernel = match op {
            BinaryOp::Add => add_f32,
            BinaryOp::Sub => elementwise_sub_f32,
            BinaryOp::Mul => mul_f32,
        };
        let n = a.len();
        let mut z = be.empty(n)?;
        // Reads n floats of a and b, writes n of z.
        kernel(be, grid_1d(n), a, b, &mut z, as_i32(n)?)?;
        return Ok(z);
    }
    // The kernel takes the full-shape operand first; for sub, `swapped` flips the order back.
    let (big, small, small_shape, swapped) = if a_shape == out {
        (a, b, b_shape, false)
    } else if b_shape == out {
        (b, a, a_shape, true)
    } else {
        return Err(unsupported());
    };
    let (inner, small_len) = Plan::new(out, out, small_shape).bias_layout().ok_or_else(unsupported)?;
    let code: i32 = match (op, swapped) {
        (BinaryOp::Add, _) => 0,
        (BinaryOp::Sub, false) => 1,
        (BinaryOp::Sub, true) => 2,
        (BinaryOp::Mul, _) => 3,
    };
    let n = big.len();
    let (n_i, inner_i, len_i) = (as_i32(n)?, as_i32(inner)?, as_i32(small_len)?);
    let mut y = be.empty(n)?;
    // Reads n floats of big and small_len floats of small (indices (i / inner) % small_len), writes n of y.
    elementwise_bcast_f32(be, grid_1d(n), big, small, &mut y, n_i, inner_i, len_i, code)?;
    Ok(y)
}

/// Sum `g` down to a bias-like target of `target_len` elements; `plan` is Plan::new(g, g, target).
pub(super) fn reduce(g: &CudaStorage, target_len: usize, plan: &Plan) -> Result<CudaStorage> {
    let (inner, len) = plan.bias_layout().ok_or_else(unsupported)?;
    debug_assert_eq!(len, target_len);
    crate::backend::cuda_reduce::bias_sum(g, inner, len)
}

/// y = x + s.
pub(super) fn add_scalar(x: &CudaStorage, s: f32) -> Result<CudaStorage> {
    let be = x.backend();
    let n = x.len();
    let n_i = as_i32(n)?;
    let mut y = be.empty(n)?;
    // Reads and writes n floats.
    elementwise_add_scalar_f32(be, grid_1d(n), x, &mut y, s, n_i)?;
    Ok(y)
}
