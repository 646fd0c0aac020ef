//! STAND-IN for the tensor-core bf16 conv of `tc.rs` (helper `tc-conv`, issue 12 item 2), with exactly its
//! signatures: each function widens its bf16 operands to f32 (exact), runs the f32 kernels of `cuda.rs`, and
//! rounds the result to bf16, so the values are those of an f32-accumulated conv on bf16 inputs, as the real
//! kernels compute (up to summation order). At merge, `mod.rs`'s `use bf16_fallback as tc_bf16` becomes
//! `use tc as tc_bf16` and this file goes.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use super::{cuda, Geom};
use crate::backend::cuda::CudaBackend;
use crate::backend::kernels::{add_f32, blocks, grid_1d, int};
use crate::ops::elementwise::cuda::{elementwise_bcast_f32, elementwise_bcast_reduce_bf16};
use crate::Result;

const OP: &str = "conv2d bf16";

/// The f32 master weight [Cout, Cin, kh, kw] as bf16 in the layout the kernels read (here: OIHW unchanged).
pub(crate) fn pack_weight_bf16(be: &Arc<CudaBackend>, w: &CudaSlice<f32>, _g: &Geom) -> Result<CudaSlice<bf16>> {
    be.round_bf16(w)
}

/// y = conv(x, w) + bias[c] + add_nc[n, c] + residual (each optional), NCHW bf16 in and out.
pub(crate) fn forward_bf16(
    be: &Arc<CudaBackend>,
    g: &Geom,
    x: &CudaSlice<bf16>,
    w_packed: &CudaSlice<bf16>,
    bias: Option<&CudaSlice<f32>>,
    add_nc: Option<&CudaSlice<f32>>,
    residual: Option<&CudaSlice<bf16>>,
) -> Result<CudaSlice<bf16>> {
    let (x32, w32) = (be.widen_bf16(x)?, be.widen_bf16(w_packed)?);
    let b32 = bias.map(|b| be.storage_f32(b)).transpose()?;
    let mut y = cuda::forward(g, &x32, &w32, b32.as_ref())?;
    let n = y.len();
    if let (Some(t), true) = (add_nc, n > 0) {
        let t = be.storage_f32(t)?;
        let mut z = be.empty(n)?;
        // y[n, c, p] + t[n·Cout + c]: reads n elements of y and N·Cout of t, writes n.
        let (n_i, inner, len) = (int(OP, n)?, int(OP, g.p())?, int(OP, g.n * g.cout)?);
        elementwise_bcast_f32(be, grid_1d(n), &y, &t, &mut z, n_i, inner, len, 0)?;
        y = z;
    }
    if let (Some(r), true) = (residual, n > 0) {
        let r = be.widen_bf16(r)?;
        let mut z = be.empty(n)?;
        // Reads n elements of y and r, writes n.
        add_f32(be, grid_1d(n), &y, &r, &mut z, int(OP, n)?)?;
        y = z;
    }
    be.round_bf16(y.f32(OP)?)
}

/// dx (bf16, NCHW) from dy (bf16) and the packed weight.
pub(crate) fn backward_data_bf16(
    be: &Arc<CudaBackend>,
    g: &Geom,
    dy: &CudaSlice<bf16>,
    w_packed: &CudaSlice<bf16>,
) -> Result<CudaSlice<bf16>> {
    let (dy32, w32) = (be.widen_bf16(dy)?, be.widen_bf16(w_packed)?);
    // x only supplies the backend here: with need_dw false the kernels never read it.
    let (dx, _) = cuda::backward(g, &dy32, &w32, &dy32, true, false)?;
    be.round_bf16(dx.expect("dx was asked for").f32(OP)?)
}

/// (dw [Cout, Cin, kh, kw] f32, db [Cout] f32) from x and dy (bf16).
pub(crate) fn backward_weight_bf16(
    be: &Arc<CudaBackend>,
    g: &Geom,
    x: &CudaSlice<bf16>,
    dy: &CudaSlice<bf16>,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let (x32, dy32) = (be.widen_bf16(x)?, be.widen_bf16(dy)?);
    // w is not read without need_dx; x stands in for it.
    let (_, dw) = cuda::backward(g, &x32, &x32, &dy32, false, true)?;
    let mut db = be.zeros(g.cout)?;
    if !dy.is_empty() {
        // db[c] = Σ over n and pixels of dy (f32 sums): block c reads the N·P elements of channel c.
        let (n_i, inner, len) = (int(OP, dy.len())?, int(OP, g.p())?, int(OP, g.cout)?);
        elementwise_bcast_reduce_bf16(be, blocks((g.cout as u32, 1, 1), 256), dy, &mut db, n_i, inner, len)?;
    }
    Ok((dw.expect("dw was asked for").into_f32(OP)?, db.into_f32(OP)?))
}
