//! Fused single-head attention in bf16 with f32 accumulation (kernels/attention_flash.cu): the same maths as
//! `attention::forward` / `backward` (S = QᵀK, P = softmax(S/√C) per row, O = V Pᵀ; q, k, v [B, C, T]), but the
//! T×T scores never reach global memory. The forward saves the row log-sum-exp lse [B, T] (natural log, of the
//! scaled scores) instead of P; the backward recomputes P = exp(S/√C − lse) from q, k and lse.
//!
//! Slice level: bf16 activations in and out (`CudaSlice<bf16>`), lse and the backward's row sums in f32. The
//! Tensor-level bf16 arm of the attention op calls these.

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
use cudarc::driver::{CudaSlice, LaunchConfig};
use half::bf16;

use crate::backend::cuda::CudaBackend;
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::{Error, Result};

kernels! {
    /// out [B, C, T] and lse [B, T] from q, k, v [B, C, T]; grid (⌈T/64⌉, B), 128 threads, `fwd_smem(C)` bytes.
    fn attention_flash_forward_bf16(q: &CudaSlice<bf16>, k: &CudaSlice<bf16>, v: &CudaSlice<bf16>,
        out: &mut CudaSlice<bf16>, lse: &mut CudaSlice<f32>, c: i32, t: i32, scale: f32);
    /// D [B, T] = Σ_c dO ⊙ O, one thread per (b, token).
    fn attention_flash_backward_dot_bf16(out: &CudaSlice<bf16>, dout: &CudaSlice<bf16>, d: &mut CudaSlice<f32>,
        b: i32, c: i32, t: i32);
    /// dk, dv [B, C, T] and each key block's share of dQ (unscaled) part [⌈T/64⌉, B, C, T] f32; grid (⌈T/64⌉, B),
    /// 256 threads, `kv_smem(C)` bytes.
    fn attention_flash_backward_kv_bf16(q: &CudaSlice<bf16>, k: &CudaSlice<bf16>, v: &CudaSlice<bf16>,
        dout: &CudaSlice<bf16>, lse: &CudaSlice<f32>, d: &CudaSlice<f32>, dk: &mut CudaSlice<bf16>,
        dv: &mut CudaSlice<bf16>, part: &mut CudaSlice<f32>, c: i32, t: i32, scale: f32);
    /// dq = scale · Σ over the `blocks` key blocks (in order) of part; one thread per of the n = B·C·T values.
    fn attention_flash_backward_dq_sum_bf16(part: &CudaSlice<f32>, dq: &mut CudaSlice<bf16>, blocks: i32, n: i32,
        scale: f32);
}

/// Rows (tokens) per CTA and streamed tokens per block, padding of a shared row (FA_BM, FA_BN, FA_PAD in the .cu).
const BM: usize = 64;
const BN: usize = 32;
const PAD: usize = 8;
/// The largest channel count (FA_CMAX): the f32 accumulator is 16 × C per warp, in registers.
const C_MAX: usize = 256;
/// Threads per CTA of the forward (FA_THREADS) and of the backward's key-block kernel (FA_KV_THREADS).
const THREADS: u32 = 128;
const KV_THREADS: u32 = 256;

/// Shared bytes of the forward: the Q tile [C][BM + PAD], one K and one V block [C][BN + PAD], bf16.
fn fwd_smem(c: usize) -> usize {
    (c * (BM + PAD) + 2 * c * (BN + PAD)) * 2
}

/// Shared bytes of the backward's key-block kernel: the K and V tiles, two stages of (Q, dO blocks, lse, D), Pᵀ and
/// dSᵀ of a query block [BM][BN + PAD].
fn kv_smem(c: usize) -> usize {
    2 * c * (BM + PAD) * 2 + 2 * (4 * c * (BN + PAD) + 8 * BN) + 2 * BM * (BN + PAD) * 2
}

/// Whether the fused kernels handle this shape (else the caller falls back): C a multiple of 16 up to 256, T ≥ 1
/// with C·T an `int`.
pub(crate) fn flash_supports(c: usize, t: usize) -> bool {
    c.is_multiple_of(16) && (16..=C_MAX).contains(&c) && t >= 1 && c.checked_mul(t).is_some_and(|n| n <= i32::MAX as usize)
}

/// The launch of a fused kernel: (⌈T/64⌉, B) CTAs of `threads` with `smem` bytes of dynamic shared memory (the kernel is allowed
/// that much first: above 48 KiB needs the opt-in).
fn launch_cfg(
    be: &Arc<CudaBackend>,
    name: &'static str,
    b: usize,
    t: usize,
    threads: u32,
    smem: usize,
) -> Result<LaunchConfig> {
    let f = be.function(name)?;
    f.set_attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
        .map_err(|e| Error::Cuda(format!("{name}: allowing {smem} bytes of shared memory: {e:?}")))?;
    Ok(LaunchConfig {
        grid_dim: (t.div_ceil(BM) as u32, b as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem as u32,
    })
}

/// Check the shape and the buffers' lengths; (C, T, scale) for the kernels.
fn check(op: &'static str, b: usize, c: usize, t: usize, slices: &[(&str, usize, usize)]) -> Result<(i32, i32, f32)> {
    if !flash_supports(c, t) {
        return Err(Error::shape(op, format!("the fused kernels take C a multiple of 16 up to {C_MAX}, T ≥ 1; got C = {c}, T = {t}")));
    }
    if b > u16::MAX as usize {
        return Err(Error::shape(op, format!("batch {b} exceeds the grid's {}", u16::MAX)));
    }
    for &(name, len, want) in slices {
        if len != want {
            return Err(Error::shape(op, format!("{name} has {len} elements, [B, C, T] = [{b}, {c}, {t}] needs {want}")));
        }
    }
    Ok((int(op, c)?, int(op, t)?, 1.0 / (c as f32).sqrt()))
}

/// out [B, C, T] bf16 and the row log-sum-exp lse [B, T] f32 (saved for the backward); scores never stored.
pub(crate) fn flash_forward_bf16(
    be: &Arc<CudaBackend>,
    q: &CudaSlice<bf16>,
    k: &CudaSlice<bf16>,
    v: &CudaSlice<bf16>,
    b: usize,
    c: usize,
    t: usize,
) -> Result<(CudaSlice<bf16>, CudaSlice<f32>)> {
    let n = b * c * t;
    let (c_i, t_i, scale) =
        check("attention (fused)", b, c, t, &[("q", q.len(), n), ("k", k.len(), n), ("v", v.len(), n)])?;
    // SAFETY: the kernel writes every element of out (each token < T of each channel) and of lse.
    let mut out = unsafe { be.stream().alloc::<bf16>(n) }?;
    let mut lse = unsafe { be.stream().alloc::<f32>(b * t) }?;
    if b == 0 {
        return Ok((out, lse));
    }
    let cfg = launch_cfg(be, "attention_flash_forward_bf16", b, t, THREADS, fwd_smem(c))?;
    attention_flash_forward_bf16(be, cfg, q, k, v, &mut out, &mut lse, c_i, t_i, scale)?;
    Ok((out, lse))
}

/// (dq, dk, dv) bf16 [B, C, T], recomputing the scores from q, k and lse: D = rowsum(dO ⊙ O), then one kernel per
/// key block (dK, dV, and the block's share of dQ into an f32 scratch of ⌈T/64⌉·B·C·T values), then the shares added
/// in key-block order (deterministic: no atomics).
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_backward_bf16(
    be: &Arc<CudaBackend>,
    q: &CudaSlice<bf16>,
    k: &CudaSlice<bf16>,
    v: &CudaSlice<bf16>,
    out: &CudaSlice<bf16>,
    lse: &CudaSlice<f32>,
    dout: &CudaSlice<bf16>,
    b: usize,
    c: usize,
    t: usize,
) -> Result<(CudaSlice<bf16>, CudaSlice<bf16>, CudaSlice<bf16>)> {
    let n = b * c * t;
    let lens = [
        ("q", q.len(), n),
        ("k", k.len(), n),
        ("v", v.len(), n),
        ("out", out.len(), n),
        ("lse", lse.len(), b * t),
        ("dout", dout.len(), n),
    ];
    let (c_i, t_i, scale) = check("attention backward (fused)", b, c, t, &lens)?;
    let blocks = t.div_ceil(BM);
    let n_i = int("attention backward (fused)", n)?;
    // SAFETY: each kernel writes every element of its output: dk, dv (every token < T of every channel), the
    // scratch (every key block's share of every (b, c, token < T)), dq, d.
    let mut dq = unsafe { be.stream().alloc::<bf16>(n) }?;
    let mut dk = unsafe { be.stream().alloc::<bf16>(n) }?;
    let mut dv = unsafe { be.stream().alloc::<bf16>(n) }?;
    let mut d = unsafe { be.stream().alloc::<f32>(b * t) }?;
    if b == 0 {
        return Ok((dq, dk, dv));
    }
    let mut part = unsafe { be.stream().alloc::<f32>(blocks * n) }?;
    attention_flash_backward_dot_bf16(be, grid_1d(b * t), out, dout, &mut d, int("attention", b)?, c_i, t_i)?;
    let cfg = launch_cfg(be, "attention_flash_backward_kv_bf16", b, t, KV_THREADS, kv_smem(c))?;
    attention_flash_backward_kv_bf16(be, cfg, q, k, v, dout, lse, &d, &mut dk, &mut dv, &mut part, c_i, t_i, scale)?;
    let blocks_i = int("attention backward (fused)", blocks)?;
    attention_flash_backward_dq_sum_bf16(be, grid_1d(n), &part, &mut dq, blocks_i, n_i, scale)?;
    Ok((dq, dk, dv))
}
