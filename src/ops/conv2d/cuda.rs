//! CUDA launches for conv2d (kernels/conv2d.cu): implicit-GEMM forward, input gradient (a gather, no atomics) and
//! weight gradient (split over the batch·pixel reduction, partials summed in a fixed order: deterministic).
//! The bias gradient is the [N, C, H, W] → [C] channel sum of the elementwise module.

use cudarc::driver::LaunchConfig;

use super::Geom;
use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::kernels::{grid_1d, kernels};
use crate::{Error, Result};

/// `struct Conv2dGeom` of kernels/conv2d.cu (the kernel layer's, since its declarations take it).
pub use crate::backend::kernels::ConvGeom;

kernels! {
    /// y = conv(x, w) (+ bias when has_bias); grid `forward_grid`.
    fn conv2d_forward_f32(
        x: &CudaStorage, w: &CudaStorage, bias: &CudaStorage, has_bias: i32, y: &mut CudaStorage, g: ConvGeom,
    );
    /// dx from gy and w, a gather; grid `dgrad_grid`.
    fn conv2d_dgrad_f32(gy: &CudaStorage, w: &CudaStorage, dx: &mut CudaStorage, g: ConvGeom);
    /// Partial dW per split of the N·Ho·Wo reduction (gridDim.z splits of `chunk`).
    fn conv2d_wgrad_f32(x: &CudaStorage, gy: &CudaStorage, out: &mut CudaStorage, chunk: i32, g: ConvGeom);
    /// dw = Σ over splits of the partials, in split order.
    fn conv2d_sum_splits_f32(partial: &CudaStorage, dw: &mut CudaStorage, n: i32, splits: i32);
}

/// Output tile of one block (CONV_BM × CONV_BN in the kernel), its reduction step, and threads per block.
pub const TILE_M: usize = 64;
pub const TILE_N: usize = 64;
pub const TILE_K: usize = 16;
const THREADS: u32 = 256;

impl ConvGeom {
    /// The kernel geometry, or an error when a size (or an index the kernels form) does not fit an `int`.
    fn new(g: &Geom) -> Result<ConvGeom> {
        let largest = [g.n * g.in_size(), g.n * g.out_size(), g.cout * g.k(), g.n * g.p() * g.kh * g.kw];
        ConvGeom::checked(g, &largest, "CUDA kernels'")
    }

    /// The kernel geometry, or an error naming `kernels` when one of the `largest` indices they form does not fit
    /// an `int`.
    pub(super) fn checked(g: &Geom, largest: &[usize], kernels: &str) -> Result<ConvGeom> {
        if largest.iter().any(|&v| v > i32::MAX as usize) {
            return Err(Error::shape("conv2d", format!("{g:?} is too large for the {kernels} int indices")));
        }
        let i = |v: usize| v as i32;
        Ok(ConvGeom {
            n: i(g.n),
            cin: i(g.cin),
            h: i(g.h),
            w: i(g.w),
            cout: i(g.cout),
            kh: i(g.kh),
            kw: i(g.kw),
            ho: i(g.ho),
            wo: i(g.wo),
            stride: i(g.stride),
            pad_top: i(g.pad.top),
            pad_left: i(g.pad.left),
        })
    }
}

fn cfg(grid: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

fn blocks(n: usize, tile: usize) -> u32 {
    n.div_ceil(tile).max(1) as u32
}

/// Forward grid: x over the N·Ho·Wo output columns, y over the Cout rows.
pub(super) fn forward_grid(g: &Geom) -> (u32, u32, u32) {
    (blocks(g.n * g.p(), TILE_N), blocks(g.cout, TILE_M), 1)
}

/// Input-gradient grid: x over the N·H·W input pixels, y over the Cin rows.
pub(super) fn dgrad_grid(g: &Geom) -> (u32, u32, u32) {
    (blocks(g.n * g.h * g.w, TILE_N), blocks(g.cin, TILE_M), 1)
}

/// Split of a reduction over `r` terms computed by a grid of `tiles` output tiles: enough blocks to give every SM
/// about two, each split at least 8 steps of `step` terms long. Returns (splits, chunk) with chunk a multiple of
/// `step` and splits · chunk ≥ r > (splits − 1) · chunk (no empty split). Both conv arms' weight gradients use it.
pub(crate) fn split_reduction(tiles: usize, r: usize, step: usize, sm_count: usize) -> (usize, usize) {
    let want = (2 * sm_count).div_ceil(tiles.max(1));
    let max_splits = r.div_ceil(8 * step).max(1);
    let splits = want.clamp(1, max_splits);
    let chunk = r.div_ceil(splits).div_ceil(step).max(1) * step;
    (r.div_ceil(chunk).max(1), chunk)
}

/// Split of the weight gradient's reduction over `r` = N·Ho·Wo terms, for a `m × n` output, in TILE_K steps.
pub fn wgrad_split(m: usize, n: usize, r: usize, sm_count: usize) -> (usize, usize) {
    split_reduction(m.div_ceil(TILE_M) * n.div_ceil(TILE_N), r, TILE_K, sm_count)
}

pub(super) fn forward(g: &Geom, x: &CudaStorage, w: &CudaStorage, b: Option<&CudaStorage>) -> Result<CudaStorage> {
    let be = x.backend();
    let cg = ConvGeom::new(g)?;
    let mut y = be.empty(g.n * g.out_size())?;
    if y.is_empty() {
        return Ok(y);
    }
    let has_bias = i32::from(b.is_some());
    // Without a bias the kernel never reads the pointer; pass the weight to have a valid one.
    let bias = b.unwrap_or(w);
    // The kernel reads x [N,Cin,H,W], w [Cout,Cin,kh,kw], bias [Cout] (if has_bias) and writes every element of
    // y [N,Cout,Ho,Wo]; the grid covers exactly those tiles (bounds-checked inside).
    conv2d_forward_f32(be, cfg(forward_grid(g)), x, w, bias, has_bias, &mut y, cg)?;
    Ok(y)
}

/// (dx, dW), each computed only when asked for.
pub(super) fn backward(
    g: &Geom,
    x: &CudaStorage,
    w: &CudaStorage,
    gy: &CudaStorage,
    need_dx: bool,
    need_dw: bool,
) -> Result<(Option<CudaStorage>, Option<CudaStorage>)> {
    let be = x.backend();
    let cg = ConvGeom::new(g)?;
    let dx = if need_dx { Some(dgrad(be, g, &cg, w, gy)?) } else { None };
    let dw = if need_dw { Some(wgrad(be, g, &cg, x, gy)?) } else { None };
    Ok((dx, dw))
}

fn dgrad(
    be: &std::sync::Arc<CudaBackend>,
    g: &Geom,
    cg: &ConvGeom,
    w: &CudaStorage,
    gy: &CudaStorage,
) -> Result<CudaStorage> {
    let mut dx = be.empty(g.n * g.in_size())?;
    if dx.is_empty() {
        return Ok(dx);
    }
    // Reads gy [N,Cout,Ho,Wo] and w; writes every element of dx [N,Cin,H,W] (grid = its tiles).
    conv2d_dgrad_f32(be, cfg(dgrad_grid(g)), gy, w, &mut dx, *cg)?;
    Ok(dx)
}

fn wgrad(
    be: &std::sync::Arc<CudaBackend>,
    g: &Geom,
    cg: &ConvGeom,
    x: &CudaStorage,
    gy: &CudaStorage,
) -> Result<CudaStorage> {
    let (m, n, r) = (g.cout, g.k(), g.n * g.p());
    if r == 0 {
        return be.zeros(m * n);
    }
    let (splits, chunk) = wgrad_split(m, n, r, be.sm_count());
    if splits as u64 * (m * n) as u64 > i32::MAX as u64 {
        return Err(Error::shape("conv2d", "weight-gradient partials too large for the CUDA kernels"));
    }
    let mut out = be.empty(splits * m * n)?;
    let grid = (blocks(n, TILE_N), blocks(m, TILE_M), splits as u32);
    // Reads x and gy; block z writes every element of its tile of partial z (out has splits·m·n floats).
    conv2d_wgrad_f32(be, cfg(grid), x, gy, &mut out, chunk as i32, *cg)?;
    if splits == 1 {
        return Ok(out);
    }
    let mut dw = be.empty(m * n)?;
    // Reads splits·m·n partials, writes m·n.
    conv2d_sum_splits_f32(be, grid_1d(m * n), &out, &mut dw, (m * n) as i32, splits as i32)?;
    Ok(dw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::{Conv2dParams, Geom};

    fn geom(x: [usize; 4], w: [usize; 4], p: Conv2dParams) -> Geom {
        Geom::new(&x, &w, None, p).unwrap()
    }

    #[test]
    fn grids_cover_every_output_tile() {
        // cifar10 conv1 at 32×32, batch 128: N·P = 131072 columns, 128 rows.
        let g = geom([128, 128, 32, 32], [128, 128, 3, 3], Conv2dParams::same(3));
        assert_eq!(forward_grid(&g), (2048, 2, 1));
        assert_eq!(dgrad_grid(&g), (2048, 2, 1));
        // Stride-2 downsample 16→8 with 256 channels, batch 3: 3·64 = 192 columns.
        let g = geom([3, 256, 16, 16], [256, 256, 3, 3], Conv2dParams::tf_same_down());
        assert_eq!((g.ho, g.wo), (8, 8));
        assert_eq!(forward_grid(&g), (3, 4, 1));
        assert_eq!(dgrad_grid(&g), (12, 4, 1));
        // conv_out: 3 output channels still get one row of tiles.
        let g = geom([2, 128, 32, 32], [3, 128, 3, 3], Conv2dParams::same(3));
        assert_eq!(forward_grid(&g), (32, 1, 1));
    }

    #[test]
    fn conv_geom_matches_the_geometry() {
        let g = geom([2, 4, 9, 7], [5, 4, 3, 3], Conv2dParams::tf_same_down());
        let c = ConvGeom::new(&g).unwrap();
        assert_eq!(
            c,
            ConvGeom {
                n: 2,
                cin: 4,
                h: 9,
                w: 7,
                cout: 5,
                kh: 3,
                kw: 3,
                ho: 4,
                wo: 3,
                stride: 2,
                pad_top: 0,
                pad_left: 0
            }
        );
        assert_eq!(std::mem::size_of::<ConvGeom>(), 12 * 4);
    }

    #[test]
    fn wgrad_split_covers_the_reduction_without_empty_splits() {
        type Split = fn(usize, usize, usize, usize) -> (usize, usize);
        let arms: [(Split, usize); 2] = [(wgrad_split, TILE_K), (super::super::tc::wgrad_split, super::super::tc::STEP)];
        for (split, step) in arms {
            for &(m, n, r, sms) in &[
                (128, 1152, 131072, 132),
                (256, 2304, 128 * 64, 132),
                (3, 1152, 2048, 132),
                (128, 27, 131072, 132),
                (64, 64, 1, 132),
                (64, 64, 17, 132),
                (64, 64, 33, 132),
                (512, 4608, 100, 1),
            ] {
                let (splits, chunk) = split(m, n, r, sms);
                assert!(splits >= 1 && chunk % step == 0, "{m} {n} {r}: {splits} × {chunk}");
                assert!(splits * chunk >= r, "{m} {n} {r}: {splits} × {chunk} does not cover");
                assert!((splits - 1) * chunk < r, "{m} {n} {r}: an empty split");
            }
        }
        // The U-Net's big case: 36 tiles on 132 SMs want 8 splits.
        assert_eq!(wgrad_split(128, 1152, 131072, 132), (8, 16384));
        // A tiny reduction is not split.
        assert_eq!(wgrad_split(64, 64, 100, 132).0, 1);
    }
}
