//! CUDA launches for the elementwise ops (kernels in kernels/elementwise.cu). Covered: same-shape operands, and
//! one operand broadcast as a "bias" (its shape is [1.., full.., 1..] against the other's full shape: the
//! [N,C,1,1] time embedding, a [C,1,1] vector, a scalar). Other broadcasts return `Unsupported`.
//!
//! bf16: same-shape operands of one dtype run the _bf16 kernels; a same-shape f32 operand beside a bf16 one is
//! rounded to bf16 first. A broadcast "bias" operand is always read as f32 (the time embedding stays f32 under
//! mixed precision) and the result takes the full operand's dtype; its gradient reduction accumulates and writes
//! f32 whatever g's dtype.

use cudarc::driver::CudaSlice;
use half::bf16;

use super::{BinaryOp, Plan};
use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{add_bf16, add_f32, grid_1d, kernels};
use crate::backend::DType;
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
    /// z = a · b on bf16 storage (f32 product, one rounding).
    fn mul_bf16(a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, z: &mut CudaSlice<bf16>, n: i32);
    /// z = a − b on bf16 storage.
    fn elementwise_sub_bf16(a: &CudaSlice<bf16>, b: &CudaSlice<bf16>, z: &mut CudaSlice<bf16>, n: i32);
    /// y = x + s on bf16 storage.
    fn elementwise_add_scalar_bf16(x: &CudaSlice<bf16>, y: &mut CudaSlice<bf16>, s: f32, n: i32);
    /// elementwise_bcast_f32 with big and y in bf16, small in f32.
    fn elementwise_bcast_bf16(
        big: &CudaSlice<bf16>, small: &CudaStorage, y: &mut CudaSlice<bf16>, n: i32, inner: i32, small_len: i32,
        op: i32,
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
    if a_shape == b_shape && (a.dtype() == DType::Bf16 || b.dtype() == DType::Bf16) {
        // Round a same-shape f32 operand to bf16 first (only the one that is f32 is copied).
        let widen = |s: &CudaStorage| if s.dtype() == DType::Bf16 { Ok(None) } else { s.cast(DType::Bf16).map(Some) };
        let (ac, bc) = (widen(a)?, widen(b)?);
        let (a16, b16) = (ac.as_ref().unwrap_or(a), bc.as_ref().unwrap_or(b));
        let kernel = match op {
            BinaryOp::Add => add_bf16,
            BinaryOp::Sub => elementwise_sub_bf16,
            BinaryOp::Mul => mul_bf16,
        };
        let n = a.len();
        let mut z = be.empty_as(DType::Bf16, n)?;
        // Reads n elements of a and b, writes n of z.
        kernel(be, grid_1d(n), a16.bf16(op.name())?, b16.bf16(op.name())?, z.bf16_mut(op.name())?, as_i32(n)?)?;
        return Ok(z);
    }
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
    let mut y = be.empty_as(big.dtype(), n)?;
    // The small operand is read as f32 (a bf16 one is widened first, exactly).
    let small_f32;
    let small = if small.dtype() == DType::F32 {
        small
    } else {
        small_f32 = small.cast(DType::F32)?;
        &small_f32
    };
    // Reads n elements of big and small_len floats of small (indices (i / inner) % small_len), writes n of y.
    match big.dtype() {
        DType::F32 => elementwise_bcast_f32(be, grid_1d(n), big, small, &mut y, n_i, inner_i, len_i, code)?,
        DType::Bf16 => {
            let (bg, yy) = (big.bf16(op.name())?, y.bf16_mut(op.name())?);
            elementwise_bcast_bf16(be, grid_1d(n), bg, small, yy, n_i, inner_i, len_i, code)?
        }
    }
    Ok(y)
}

/// Sum `g` down to a bias-like target of `target_len` elements; `plan` is Plan::new(g, g, target). The sum is f32
/// whatever g's dtype.
pub(super) fn reduce(g: &CudaStorage, target_len: usize, plan: &Plan) -> Result<CudaStorage> {
    let (inner, len) = plan.bias_layout().ok_or_else(unsupported)?;
    debug_assert_eq!(len, target_len);
    match g.dtype() {
        DType::F32 => crate::backend::cuda_reduce::bias_sum(g, inner, len),
        // Widened exactly first: the two-level f32 reduction reads f32.
        DType::Bf16 => crate::backend::cuda_reduce::bias_sum(&g.cast(DType::F32)?, inner, len),
    }
}

/// y = x + s.
pub(super) fn add_scalar(x: &CudaStorage, s: f32) -> Result<CudaStorage> {
    let be = x.backend();
    let n = x.len();
    let n_i = as_i32(n)?;
    let mut y = be.empty_as(x.dtype(), n)?;
    // Reads and writes n elements.
    match x.dtype() {
        DType::F32 => elementwise_add_scalar_f32(be, grid_1d(n), x, &mut y, s, n_i)?,
        DType::Bf16 => elementwise_add_scalar_bf16(be, grid_1d(n), x.bf16("add_scalar")?, y.bf16_mut("add_scalar")?, s, n_i)?,
    }
    Ok(y)
}
