//! conv2d on NCHW input and OIHW weights, with a stride and explicit (possibly asymmetric) zero padding:
//! y[n] = W · im2col(x[n]) + b, where W is the weight viewed as a `Cout × (Cin·kh·kw)` matrix.
//!
//! CPU: im2col + GEMM per batch item. When the batch covers the rayon threads, each thread takes a contiguous
//! run of items and runs single-threaded GEMMs (no synchronisation inside a GEMM); a smaller batch runs item by
//! item with GEMMs that use every thread. 1×1 stride-1 unpadded convs skip im2col: the input already is the
//! column matrix. The column buffer is per thread and reused across calls.
//!
//! Backward (recomputing the columns rather than keeping them from the forward, which would cost
//! `Cin·kh·kw / Cin` times the activation memory): dW = Σ_n gy[n]·col[n]ᵀ, db = Σ_{n,p} gy, dx[n] = col2im(Wᵀ·gy[n]).

use std::cell::Cell;
use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use rayon::prelude::*;

use crate::autograd::{record, reshape, Var};
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::{DType, Storage};
use crate::ops::elementwise;
use crate::{ensure_shape, Error, Result, Tensor};

pub mod check;
pub mod cuda;
pub mod tc;

// The bf16 arm's kernels: the tensor-core implicit GEMMs.
use tc as tc_bf16;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: Padding,
}

impl Conv2dParams {
    /// Stride 1 and `k/2` zero padding on every side: keeps H×W for odd `k`.
    pub fn same(k: usize) -> Self {
        let q = k / 2;
        Conv2dParams { stride: 1, padding: Padding { top: q, bottom: q, left: q, right: q } }
    }

    /// Stride 2, padding one row at the bottom and one column at the right only: TensorFlow's "SAME" for a 3×3
    /// kernel on even sizes (H → H/2), which the DDPM paper's downsample uses. Odd sizes follow the general
    /// formula, (H + 1 − k)/2 + 1, which is not TF's SAME there.
    pub fn tf_same_down() -> Self {
        Conv2dParams { stride: 2, padding: Padding { top: 0, bottom: 1, left: 0, right: 1 } }
    }
}

/// The sizes of one conv call, validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    stride: usize,
    pad: Padding,
}

impl Geom {
    pub(crate) fn new(x: &[usize], w: &[usize], bias_len: Option<usize>, p: Conv2dParams) -> Result<Geom> {
        let &[n, cin, h, wd] = x else {
            return Err(Error::shape("conv2d", format!("input must be NCHW (4-D), got {x:?}")));
        };
        let &[cout, wcin, kh, kw] = w else {
            return Err(Error::shape("conv2d", format!("weight must be [Cout, Cin, kh, kw], got {w:?}")));
        };
        ensure_shape!(p.stride > 0, "conv2d", "stride must be positive");
        ensure_shape!(cin == wcin, "conv2d", "input has {cin} channels, weight {w:?} expects {wcin}");
        ensure_shape!(cin > 0 && cout > 0 && kh > 0 && kw > 0, "conv2d", "empty weight {w:?}");
        if let Some(len) = bias_len {
            ensure_shape!(len == cout, "conv2d", "bias has {len} values for {cout} output channels");
        }
        let Padding { top, bottom, left, right } = p.padding;
        let (hp, wp) = (h + top + bottom, wd + left + right);
        ensure_shape!(kh <= hp && kw <= wp, "conv2d", "kernel {kh}×{kw} larger than the padded input {hp}×{wp}");
        let (ho, wo) = ((hp - kh) / p.stride + 1, (wp - kw) / p.stride + 1);
        Ok(Geom { n, cin, h, w: wd, cout, kh, kw, ho, wo, stride: p.stride, pad: p.padding })
    }
    /// Rows of the column matrix (the GEMM's inner dimension).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Output pixels per channel (columns of the column matrix).
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn in_size(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_size(&self) -> usize {
        self.cout * self.p()
    }
    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding { top: 0, bottom: 0, left: 0, right: 0 }
    }
    /// Output columns `lo..hi` whose input column `ow·stride + kj − left` lies inside the image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        valid_range(kj, self.pad.left, self.w, self.wo, self.stride)
    }
    /// Output rows `lo..hi` whose input row `oh·stride + ki − top` lies inside the image.
    fn valid_rows(&self, ki: usize) -> (usize, usize) {
        valid_range(ki, self.pad.top, self.h, self.ho, self.stride)
    }
}

/// The outputs `o` in `lo..hi` (within `0..out`) for which `o·stride + offset − pad_before` is in `0..size`.
fn valid_range(offset: usize, pad_before: usize, size: usize, out: usize, stride: usize) -> (usize, usize) {
    let lo = pad_before.saturating_sub(offset).div_ceil(stride);
    let reach = size + pad_before; // need o·stride + offset < reach
    let hi = if reach > offset { ((reach - offset - 1) / stride + 1).min(out) } else { 0 };
    (lo.min(hi), hi)
}

/// Walk the column matrix of one item: `f(segment, src)` for each run of column-matrix entries whose input
/// pixels are `x[src + i·stride]`, and `pad(segment)` for the entries that fall in the zero padding.
/// `pad` runs both before and after the `f`s of a column-matrix row, so a copying `f` may scribble over padding
/// entries (im2col) and an accumulating `f` finds them zeroed (col2im, which owns its scratch column matrix).
fn for_each_patch(g: &Geom, col: &mut [f32], mut pad: impl FnMut(&mut [f32]), mut f: impl FnMut(&mut [f32], usize)) {
    let (p, wo, s) = (g.p(), g.wo, g.stride);
    // With stride 1 and Wo = W, consecutive rows are contiguous in both col and x: one segment per kernel tap.
    let merge_rows = s == 1 && wo == g.w;
    for c in 0..g.cin {
        for ki in 0..g.kh {
            let (r0, r1) = g.valid_rows(ki);
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * p..][..p];
                let (lo, hi) = g.valid_cols(kj);
                if lo >= hi || r0 >= r1 {
                    pad(row);
                    continue;
                }
                pad(&mut row[..r0 * wo]);
                pad(&mut row[r1 * wo..]);
                let mut pad_edges = |row: &mut [f32]| {
                    for out in row[r0 * wo..r1 * wo].chunks_exact_mut(wo) {
                        pad(&mut out[..lo]);
                        pad(&mut out[hi..]);
                    }
                };
                pad_edges(row);
                let src = |oh: usize| (c * g.h + oh * s + ki - g.pad.top) * g.w + lo * s + kj - g.pad.left;
                if merge_rows {
                    f(&mut row[r0 * wo + lo..(r1 - 1) * wo + hi], src(r0));
                } else {
                    for oh in r0..r1 {
                        f(&mut row[oh * wo + lo..oh * wo + hi], src(oh));
                    }
                }
                pad_edges(row);
            }
        }
    }
}

/// Unfold one item `x` (`Cin × H × W`) into `col` (`Cin·kh·kw × Ho·Wo`), zeros for the padding.
fn im2col(g: &Geom, x: &[f32], col: &mut [f32]) {
    let s = g.stride;
    for_each_patch(
        g,
        col,
        |seg| seg.fill(0.0),
        |seg, src| {
            let src = &x[src..(src + seg.len() * s).min(x.len())];
            if s == 1 {
                seg.copy_from_slice(src);
            } else {
                // chunks(s) rather than indexing: no bounds checks, and LLVM vectorises the gather.
                seg.iter_mut().zip(src.chunks(s)).for_each(|(o, v)| *o = v[0]);
            }
        },
    );
}

/// The adjoint of `im2col`: add every column-matrix entry back onto the input pixel it was read from.
fn col2im(g: &Geom, col: &mut [f32], dx: &mut [f32]) {
    let s = g.stride;
    for_each_patch(
        g,
        col,
        |seg| seg.fill(0.0),
        |seg, dst| {
            let end = (dst + seg.len() * s).min(dx.len());
            let dst = &mut dx[dst..end];
            if s == 1 {
                dst.iter_mut().zip(seg.iter()).for_each(|(d, v)| *d += *v);
            } else {
                dst.chunks_mut(s).zip(seg.iter()).for_each(|(d, v)| d[0] += *v);
            }
        },
    );
}

thread_local! {
    /// This thread's column buffer, kept between calls so the hot loop does not page-fault a fresh one each time.
    static COL_BUFFER: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Buffers larger than this are freed after the call instead of being kept per thread.
const KEEP_BUFFER_MAX: usize = 16 << 20;

/// Run `f` with this thread's column buffer of at least `len` floats (taken out of the cell, so a nested call
/// just allocates its own).
fn with_col_buffer<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = COL_BUFFER.with(|c| c.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    if buf.len() <= KEEP_BUFFER_MAX {
        COL_BUFFER.with(|c| c.set(buf));
    }
    r
}

/// Items per job and GEMM threading: one job per thread with single-threaded GEMMs when the batch covers the
/// threads, else every item in one job with GEMMs that use all threads.
fn plan(n: usize) -> (usize, Threads) {
    let threads = rayon::current_num_threads();
    if n >= threads && threads > 1 {
        (n.div_ceil(threads), Threads::One)
    } else {
        (n.max(1), Threads::All)
    }
}

fn forward_cpu(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![0.0; g.n * g.out_size()];
    if y.is_empty() {
        return y;
    }
    let (per_job, threads) = plan(g.n);
    let (k, p) = (g.k(), g.p());
    let job = |(j, ys): (usize, &mut [f32])| {
        with_col_buffer(if g.pointwise() { 0 } else { k * p }, |col| {
            for (i, yi) in ys.chunks_exact_mut(g.out_size()).enumerate() {
                let xi = &x[(j * per_job + i) * g.in_size()..][..g.in_size()];
                let cols = if g.pointwise() {
                    Mat::new(xi, k, p)
                } else {
                    im2col(g, xi, col);
                    Mat::new(col, k, p)
                };
                if let Some(b) = b {
                    for (row, &bias) in yi.chunks_exact_mut(p).zip(b) {
                        row.fill(bias);
                    }
                }
                cpu::gemm(yi, Mat::new(w, g.cout, k), cols, b.is_some(), threads);
            }
        })
    };
    if threads == Threads::One {
        y.par_chunks_mut(per_job * g.out_size()).enumerate().for_each(job);
    } else {
        y.chunks_mut(per_job * g.out_size()).enumerate().for_each(job);
    }
    y
}

/// (dx, dW) on the CPU; each is computed only when asked for.
fn backward_cpu(g: &Geom, x: &[f32], w: &[f32], gy: &[f32], need_dx: bool, need_dw: bool) -> [Option<Vec<f32>>; 2] {
    let mut dx = need_dx.then(|| vec![0.0; g.n * g.in_size()]);
    if g.n == 0 || !(need_dx || need_dw) {
        return [dx, need_dw.then(|| vec![0.0; g.cout * g.k()])];
    }
    let (per_job, threads) = plan(g.n);
    let jobs = g.n.div_ceil(per_job);
    let (k, p) = (g.k(), g.p());
    // One dx slice per job (or none): each job writes only its own items.
    let dx_chunks: Vec<Option<&mut [f32]>> = match &mut dx {
        Some(d) => d.chunks_mut(per_job * g.in_size()).map(Some).collect(),
        None => (0..jobs).map(|_| None).collect(),
    };
    let job = |(j, mut dxs): (usize, Option<&mut [f32]>)| -> Option<Vec<f32>> {
        let mut dw = need_dw.then(|| vec![0.0; g.cout * k]);
        with_col_buffer(if g.pointwise() { 0 } else { k * p }, |col| {
            for i in 0..per_job.min(g.n - j * per_job) {
                let item = j * per_job + i;
                let xi = &x[item * g.in_size()..][..g.in_size()];
                let gyi = Mat::new(&gy[item * g.out_size()..][..g.out_size()], g.cout, p);
                if let Some(dw) = &mut dw {
                    let cols = if g.pointwise() {
                        Mat::new(xi, k, p)
                    } else {
                        im2col(g, xi, col);
                        Mat::new(col, k, p)
                    };
                    cpu::gemm(dw, gyi, cols.t(), true, threads);
                }
                if let Some(dxs) = &mut dxs {
                    let dxi = &mut dxs[i * g.in_size()..][..g.in_size()];
                    let wt = Mat::new(w, g.cout, k).t();
                    if g.pointwise() {
                        cpu::gemm(dxi, wt, gyi, false, threads);
                    } else {
                        cpu::gemm(col, wt, gyi, false, threads);
                        col2im(g, col, dxi);
                    }
                }
            }
        });
        dw
    };
    // Partial dW sums are added in job order, so the result does not depend on rayon's scheduling (resume is
    // bit-exact on any core count).
    let partials: Vec<Option<Vec<f32>>> = if threads == Threads::One {
        dx_chunks.into_par_iter().enumerate().map(job).collect()
    } else {
        dx_chunks.into_iter().enumerate().map(job).collect()
    };
    let dw = partials.into_iter().flatten().reduce(|mut a, b| {
        a.iter_mut().zip(&b).for_each(|(s, v)| *s += v);
        a
    });
    [dx, dw]
}

/// Σ of a slice in 8 independent lanes (vectorises, and is more accurate than one running sum).
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// y = conv(x, w) + b. `x` is `[N, Cin, H, W]`, `w` `[Cout, Cin, kh, kw]`, `b` `[Cout]`; y is `[N, Cout, Ho, Wo]`
/// with `Ho = (H + top + bottom − kh) / stride + 1` (likewise `Wo`).
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    if let Some(b) = b {
        ensure_shape!(b.rank() == 1, "conv2d", "bias must be 1-D, got {:?}", b.shape());
    }
    let g = Geom::new(x.shape(), w.shape(), b.map(|b| b.numel()), p)?;
    let mixed = || Tensor::device_mismatch("conv2d", &[x, w].into_iter().chain(b).collect::<Vec<_>>());
    match (x.storage(), w.storage()) {
        (Storage::Cpu(xv), Storage::Cpu(wv)) => {
            let bias = match b.map(|b| b.storage()) {
                None => None,
                Some(Storage::Cpu(v)) => Some(v.as_slice()),
                Some(Storage::Cuda(_)) => return Err(mixed()),
            };
            Tensor::from_vec(forward_cpu(&g, xv, wv, bias), &g.out_shape())
        }
        (Storage::Cuda(xc), Storage::Cuda(wc)) => {
            let bias = match b.map(|b| b.storage()) {
                None => None,
                Some(Storage::Cuda(c)) => Some(c),
                Some(Storage::Cpu(_)) => return Err(mixed()),
            };
            if xc.dtype() == DType::Bf16 {
                let packed = tc_bf16::pack_weight_bf16(xc.backend(), wc.f32("conv2d")?, &g)?;
                return forward_bf16(&g, xc, &packed, bias);
            }
            Tensor::from_storage(Storage::Cuda(cuda::forward(&g, xc, wc, bias)?), &g.out_shape())
        }
        _ => Err(mixed()),
    }
}

/// The input gradients of a conv; each is `Some` exactly when it was asked for.
pub struct Conv2dGrads {
    pub dx: Option<Tensor>,
    pub dw: Option<Tensor>,
    pub db: Option<Tensor>,
}

/// Gradients of `forward(x, w, b, p)` given the output gradient `gy`. `needs` = [dx, dw, db]: work for the
/// gradients not asked for is skipped.
pub fn backward(x: &Tensor, w: &Tensor, gy: &Tensor, p: Conv2dParams, needs: [bool; 3]) -> Result<Conv2dGrads> {
    let g = Geom::new(x.shape(), w.shape(), None, p)?;
    ensure_shape!(gy.shape() == g.out_shape(), "conv2d backward", "gy {:?}, expected {:?}", gy.shape(), g.out_shape());
    let [need_dx, need_dw, need_db] = needs;
    let (xv, wv, gv) = match (x.storage(), w.storage(), gy.storage()) {
        (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)) => (a, b, c),
        (Storage::Cuda(xc), Storage::Cuda(wc), Storage::Cuda(gc)) if xc.dtype() == DType::Bf16 => {
            let packed = tc_bf16::pack_weight_bf16(xc.backend(), wc.f32("conv2d backward")?, &g)?;
            return backward_bf16(&g, xc, &packed, gc, needs);
        }
        (Storage::Cuda(xc), Storage::Cuda(wc), Storage::Cuda(gc)) => {
            let (dx, dw) = cuda::backward(&g, xc, wc, gc, need_dx, need_dw)?;
            let wrap =
                |s: Option<_>, shape: &[usize]| s.map(|s| Tensor::from_storage(Storage::Cuda(s), shape)).transpose();
            // db = Σ over n and pixels: the [N, C, H, W] → [1, C, 1, 1] broadcast reduction.
            let db = need_db
                .then(|| elementwise::reduce_to_shape(gy, &[1, g.cout, 1, 1])?.reshape(&[g.cout]))
                .transpose()?;
            return Ok(Conv2dGrads { dx: wrap(dx, x.shape())?, dw: wrap(dw, w.shape())?, db });
        }
        _ => return Err(Tensor::device_mismatch("conv2d backward", &[x, w, gy])),
    };
    let [dx, dw] = backward_cpu(&g, xv, wv, gv, need_dx, need_dw);
    let p_len = g.p();
    let db = need_db.then(|| -> Vec<f32> {
        (0..g.cout)
            .into_par_iter()
            .map(|co| (0..g.n).map(|i| lane_sum(&gv[(i * g.cout + co) * p_len..][..p_len])).sum())
            .collect()
    });
    Ok(Conv2dGrads {
        dx: dx.map(|v| Tensor::from_vec(v, x.shape())).transpose()?,
        dw: dw.map(|v| Tensor::from_vec(v, w.shape())).transpose()?,
        db: db.map(|v| Tensor::from_vec(v, &[g.cout])).transpose()?,
    })
}

/// The bf16 forward (x bf16, the weight already packed, an f32 bias): y bf16.
fn forward_bf16(g: &Geom, x: &CudaStorage, packed: &CudaSlice<bf16>, b: Option<&CudaStorage>) -> Result<Tensor> {
    let be = x.backend();
    let bias = b.map(|b| b.f32("conv2d bias")).transpose()?;
    let y = tc_bf16::forward_bf16(be, g, x.bf16("conv2d")?, packed, bias, None, None)?;
    Tensor::from_storage(Storage::Cuda(CudaStorage::from_bf16(y, be)), &g.out_shape())
}

/// The bf16 backward: dx bf16 (from the packed weight), dw and db f32 (the master weight's dtype).
fn backward_bf16(
    g: &Geom,
    x: &CudaStorage,
    packed: &CudaSlice<bf16>,
    gy: &CudaStorage,
    [need_dx, need_dw, need_db]: [bool; 3],
) -> Result<Conv2dGrads> {
    let be: &Arc<CudaBackend> = x.backend();
    let dy = gy.bf16("conv2d backward")?;
    let wrap = |s: CudaStorage, shape: &[usize]| Tensor::from_storage(Storage::Cuda(s), shape);
    let dx = need_dx
        .then(|| -> Result<Tensor> {
            let dx = tc_bf16::backward_data_bf16(be, g, dy, packed)?;
            wrap(CudaStorage::from_bf16(dx, be), &[g.n, g.cin, g.h, g.w])
        })
        .transpose()?;
    let (mut dw, mut db) = (None, None);
    if need_dw || need_db {
        let (w_grad, b_grad) = tc_bf16::backward_weight_bf16(be, g, x.bf16("conv2d backward")?, dy)?;
        dw = need_dw.then(|| wrap(CudaStorage::from_slice(w_grad, be), &[g.cout, g.cin, g.kh, g.kw])).transpose()?;
        db = need_db.then(|| wrap(CudaStorage::from_slice(b_grad, be), &[g.cout])).transpose()?;
    }
    Ok(Conv2dGrads { dx, dw, db })
}

/// conv2d with a bf16 input under mixed precision, with the epilogue operands of [`conv2d_fused`]: one tensor-core
/// launch adds bias, add_nc and the residual to the f32 sums and rounds once. The f32 master weight is packed to
/// bf16 once per call and kept for the backward's dx (not packed again); dW, db and d add_nc come back f32, dx and
/// d residual (= dy) bf16.
fn conv2d_bf16<'a>(
    x: &'a Var,
    w: &'a Var,
    b: Option<&'a Var>,
    add_nc: Option<&'a Var>,
    residual: Option<&'a Var>,
    p: Conv2dParams,
) -> Result<Var> {
    if let Some(b) = b {
        ensure_shape!(b.value().rank() == 1, "conv2d", "bias must be 1-D, got {:?}", b.shape());
    }
    let g = Geom::new(x.shape(), w.shape(), b.map(|b| b.value().numel()), p)?;
    let operands: Vec<&Var> = [x, w].into_iter().chain(b).chain(add_nc).chain(residual).collect();
    let values: Vec<&Tensor> = operands.iter().map(|v| v.value()).collect();
    let on_cuda = |v: &'a Var| -> Result<&'a CudaStorage> {
        match v.value().storage() {
            Storage::Cuda(c) => Ok(c),
            Storage::Cpu(_) => Err(Tensor::device_mismatch("conv2d", &values)),
        }
    };
    let (xc, wc) = (on_cuda(x)?, on_cuda(w)?);
    let bias = b.map(|b| on_cuda(b)?.f32("conv2d bias")).transpose()?;
    let add = add_nc.map(|a| on_cuda(a)?.f32("conv2d add_nc")).transpose()?;
    let res = residual.map(|r| on_cuda(r)?.bf16("conv2d residual")).transpose()?;
    let be = xc.backend();
    let packed = tc_bf16::pack_weight_bf16(be, wc.f32("conv2d")?, &g)?;
    let y = tc_bf16::forward_bf16(be, &g, xc.bf16("conv2d")?, &packed, bias, add, res)?;
    let y = Tensor::from_storage(Storage::Cuda(CudaStorage::from_bf16(y, be)), &g.out_shape())?;
    let xv = x.value().clone();
    let (has_b, has_a, has_r) = (b.is_some(), add_nc.is_some(), residual.is_some());
    Ok(record(y, &operands, move |gy, needs| {
        // needs: x, w, then bias, add_nc, residual as far as they were given.
        let mut optional = needs[2..].iter().copied();
        let mut need = |given: bool| given && optional.next().unwrap_or(false);
        let (need_db, need_da, need_dr) = (need(has_b), need(has_a), need(has_r));
        let (Storage::Cuda(xc), Storage::Cuda(gc)) = (xv.storage(), gy.storage()) else {
            return Err(Tensor::device_mismatch("conv2d backward", &[&xv, gy]));
        };
        let be = xc.backend();
        let grads = backward_bf16(&g, xc, &packed, gc, [needs[0], needs[1], need_db])?;
        let mut out = vec![grads.dx, grads.dw];
        if has_b {
            out.push(grads.db);
        }
        if has_a {
            let da = need_da
                .then(|| -> Result<Tensor> {
                    let da = tc_bf16::add_nc_grad_bf16(be, &g, gc.bf16("conv2d backward")?)?;
                    Tensor::from_storage(Storage::Cuda(CudaStorage::from_slice(da, be)), &[g.n, g.cout])
                })
                .transpose()?;
            out.push(da);
        }
        if has_r {
            out.push(need_dr.then(|| gy.clone()));
        }
        Ok(out)
    }))
}

/// y = conv(x, w) + b[c] + add_nc[n, c] + residual on vars, each of the three optional: the U-Net ResBlock's convs
/// with their bias, the time-embedding projection `add_nc` [N, Cout] (conv1) and the shortcut as `residual`, of
/// y's shape (conv2). Backward: dx and dW as [`conv2d`]'s, db and d add_nc[n, c] = Σ over the pixels of dy (f32),
/// d residual = dy.
///
/// bf16 (CUDA): one tensor-core launch whose epilogue adds all three to the f32 sums and rounds once (add_nc is
/// f32, the residual bf16). f32 (CPU and CUDA): the separate ops in the U-Net's order — conv + b, then + add_nc
/// broadcast over the pixels, then residual + that (diffusers' ResnetBlock2D: `input_tensor + hidden_states`) — so
/// the f32 results, gradients included, are those of the unfused ops bit for bit.
pub fn conv2d_fused(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    add_nc: Option<&Var>,
    residual: Option<&Var>,
    p: Conv2dParams,
) -> Result<Var> {
    let g = Geom::new(x.shape(), w.shape(), b.map(|b| b.value().numel()), p)?;
    if let Some(a) = add_nc {
        let want = [g.n, g.cout];
        ensure_shape!(a.shape() == want, "conv2d", "add_nc {:?}, expected {want:?} (per image and channel)", a.shape());
    }
    if let Some(r) = residual {
        let want = g.out_shape();
        ensure_shape!(r.shape() == want, "conv2d", "residual {:?}, expected the output's {want:?}", r.shape());
    }
    if x.value().dtype() == DType::Bf16 {
        return conv2d_bf16(x, w, b, add_nc, residual, p);
    }
    let mut y = conv2d(x, w, b, p)?;
    if let Some(a) = add_nc {
        y = elementwise::add(&y, &reshape(a, &[g.n, g.cout, 1, 1])?)?;
    }
    if let Some(r) = residual {
        y = elementwise::add(r, &y)?;
    }
    Ok(y)
}

/// conv2d on vars: records the backward on the inputs' tape.
pub fn conv2d(x: &Var, w: &Var, b: Option<&Var>, p: Conv2dParams) -> Result<Var> {
    if x.value().dtype() == DType::Bf16 {
        return conv2d_bf16(x, w, b, None, None, p);
    }
    let y = forward(x.value(), w.value(), b.map(|b| b.value()), p)?;
    let (xv, wv) = (x.value().clone(), w.value().clone());
    let mut inputs = vec![x, w];
    inputs.extend(b);
    Ok(record(y, &inputs, move |gy, needs| {
        let has_bias = needs.len() == 3;
        let grads = backward(&xv, &wv, gy, p, [needs[0], needs[1], has_bias && needs[2]])?;
        let mut out = vec![grads.dx, grads.dw];
        if has_bias {
            out.push(grads.db);
        }
        Ok(out)
    }))
}
