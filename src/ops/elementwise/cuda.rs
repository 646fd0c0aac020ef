//! CUDA launches for the elementwise ops (kernels in kernels/elementwise.cu). Covered: same-shape operands, and
//! one operand broadcast as a "bias" (its shape is [1.., full.., 1..] against the other's full shape: the
//! [N,C,1,1] time embedding, a [C,1,1] vector, a scalar). Other broadcasts return `Unsupported`.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{BinaryOp, Plan};
use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::{Error, Result};

fn cuda_err(e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{e:?}"))
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
        let name = match op {
            BinaryOp::Add => "add_f32",
            BinaryOp::Sub => "elementwise_sub_f32",
            BinaryOp::Mul => "mul_f32",
        };
        return be.binary(name, a, b);
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
    let mut y = be.zeros(n)?;
    let f = be.function("elementwise_bcast_f32")?;
    // SAFETY: reads n floats of big and small_len floats of small (indices (i / inner) % small_len), writes n of y.
    unsafe {
        be.stream()
            .launch_builder(&f)
            .arg(&big.buf)
            .arg(&small.buf)
            .arg(&mut y.buf)
            .arg(&n_i)
            .arg(&inner_i)
            .arg(&len_i)
            .arg(&code)
            .launch(CudaBackend::grid_1d(n))
    }
    .map_err(cuda_err)?;
    Ok(y)
}

/// Sum `g` down to a bias-like target of `target_len` elements; `plan` is Plan::new(g, g, target).
pub(super) fn reduce(g: &CudaStorage, target_len: usize, plan: &Plan) -> Result<CudaStorage> {
    let be = g.backend();
    let (inner, len) = plan.bias_layout().ok_or_else(unsupported)?;
    debug_assert_eq!(len, target_len);
    let mut out = be.zeros(target_len)?;
    if target_len == 0 || g.is_empty() {
        return Ok(out);
    }
    let (n_i, inner_i, len_i) = (as_i32(g.len())?, as_i32(inner)?, as_i32(len)?);
    let f = be.function("elementwise_bcast_reduce_f32")?;
    // One block of 256 threads per target element.
    let cfg = LaunchConfig { grid_dim: (len as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: block j reads the g elements whose row index is ≡ j (mod len) and writes out[j].
    unsafe {
        be.stream().launch_builder(&f).arg(&g.buf).arg(&mut out.buf).arg(&n_i).arg(&inner_i).arg(&len_i).launch(cfg)
    }
    .map_err(cuda_err)?;
    Ok(out)
}

/// y = f(x, s) for a kernel `name(const float* x, float* y, float s, int n)`.
pub(super) fn scalar_op(name: &'static str, x: &CudaStorage, s: f32) -> Result<CudaStorage> {
    let be = x.backend();
    let n = x.len();
    let n_i = as_i32(n)?;
    let mut y = be.zeros(n)?;
    let f = be.function(name)?;
    // SAFETY: reads and writes n floats.
    unsafe {
        be.stream().launch_builder(&f).arg(&x.buf).arg(&mut y.buf).arg(&s).arg(&n_i).launch(CudaBackend::grid_1d(n))
    }
    .map_err(cuda_err)?;
    Ok(y)
}
