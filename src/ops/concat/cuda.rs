//! CUDA arm of concat (kernels/concat.cu): one launch per input, copying its blocks into (or, for the backward,
//! out of) their slot in the whole.

use super::OP;
use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::CudaStorage;
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::DType;
use crate::{Error, Result};

kernels! {
    /// whole_dst[(i / part) · whole + offset + i % part] = part_src[i], n = outer · part threads.
    fn concat_channels_copy_in(part_src: &CudaStorage, whole_dst: &mut CudaStorage, n: i32, part: i32, whole: i32,
        offset: i32);
    /// part_dst[i] = whole_src[(i / part) · whole + offset + i % part].
    fn concat_channels_split_out(whole_src: &CudaStorage, part_dst: &mut CudaStorage, n: i32, part: i32, whole: i32,
        offset: i32);
    /// concat_channels_copy_in on bf16 storage.
    fn concat_channels_copy_in_bf16(part_src: &CudaSlice<bf16>, whole_dst: &mut CudaSlice<bf16>, n: i32, part: i32,
        whole: i32, offset: i32);
    /// concat_channels_split_out on bf16 storage.
    fn concat_channels_split_out_bf16(whole_src: &CudaSlice<bf16>, part_dst: &mut CudaSlice<bf16>, n: i32,
        part: i32, whole: i32, offset: i32);
}

/// Which way `block_copy` copies.
#[derive(Clone, Copy, Debug)]
pub(super) enum Direction {
    /// part → its slot in the whole (forward).
    In,
    /// the slot in the whole → part (backward).
    Out,
}

/// Copy between a part (outer blocks of `part` values) and its slot at `offset` in the whole (outer blocks of
/// `whole` values).
pub(super) fn block_copy(
    dir: Direction,
    src: &CudaStorage,
    dst: &mut CudaStorage,
    outer: usize,
    part: usize,
    whole: usize,
    offset: usize,
) -> Result<()> {
    let n = outer * part;
    if n == 0 {
        return Ok(());
    }
    let be = src.backend().clone();
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| Error::msg(format!("{OP}: {v} is too large for CUDA")));
    let (n_i, part_i, whole_i, offset_i) = (to_i32(n)?, to_i32(part)?, to_i32(whole)?, to_i32(offset)?);
    if src.dtype() == DType::Bf16 {
        let kernel = match dir {
            Direction::In => concat_channels_copy_in_bf16,
            Direction::Out => concat_channels_split_out_bf16,
        };
        return kernel(&be, grid_1d(n), src.bf16(OP)?, dst.bf16_mut(OP)?, n_i, part_i, whole_i, offset_i);
    }
    let kernel = match dir {
        Direction::In => concat_channels_copy_in,
        Direction::Out => concat_channels_split_out,
    };
    // Thread i < n touches part element i and whole element (i / part) * whole + offset + i % part, both in bounds
    // because offset + part <= whole.
    kernel(&be, grid_1d(n), src, dst, n_i, part_i, whole_i, offset_i)
}
