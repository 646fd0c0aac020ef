//! cuda-sim: runs the PTX that nvcc emits from `kernels/*.cu` on the CPU, with compute-sanitizer style checks.
//!
//! Layers (each only points down):
//! - `ir`: the decoded module (kernels, instructions with resolved registers and branch targets).
//! - `parse`: PTX text -> `ir::Module`; `alu`: the lane-local semantics of every arithmetic/logic/conversion op.
//! - `mem`: device memory (allocation table, init shadow) shared by the driver and the executor.
//! - `exec`: runs one launch (warps of converged lanes, CTAs in parallel) with memcheck, racecheck, initcheck
//!   and launch checks, and counts FLOPs and bytes.
//!
//! The driver API stand-in (`libcuda/`) and the cuBLAS stand-in (`libcublas/`) are thin C-ABI crates on top.

pub mod alu;
pub mod exec;
pub mod ir;
pub mod mem;
pub mod parse;
