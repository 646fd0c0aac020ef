//! Runs one kernel launch. (Stub: being written; see DESIGN.md for the contract.)

use crate::ir::{Kernel, Module};
use crate::mem::DeviceMemory;

/// Grid, block and dynamic shared memory of a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dyn_shared_bytes: u32,
}

/// Device limits the launch checks use (an H200 by default).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_threads_per_block: u32,
    pub max_block: [u32; 3],
    pub max_grid: [u32; 3],
    /// Shared memory per block without the opt-in attribute (48 KiB).
    pub shared_per_block: u32,
    /// With `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` raised (227 KiB).
    pub shared_per_block_optin: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_threads_per_block: 1024,
            max_block: [1024, 1024, 64],
            max_grid: [i32::MAX as u32, 65535, 65535],
            shared_per_block: 48 * 1024,
            shared_per_block_optin: 227 * 1024,
        }
    }
}

/// What to check and how to run.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub memcheck: bool,
    pub racecheck: bool,
    pub initcheck: bool,
    /// Host threads running CTAs in parallel (0 = all cores).
    pub threads: usize,
    /// The kernel's max dynamic shared size attribute as the driver last set it (bytes).
    pub max_dynamic_shared: u32,
    pub limits: Limits,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            memcheck: true,
            racecheck: true,
            initcheck: true,
            threads: 0,
            max_dynamic_shared: 48 * 1024,
            limits: Limits::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    Memcheck,
    Racecheck,
    Initcheck,
    Launch,
    /// `trap`, an illegal instruction, a deadlock at a barrier.
    Error,
}

/// One sanitizer finding, already formatted for people: kernel, file:line, thread, block, address, nearest
/// allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub kind: ReportKind,
    pub message: String,
}

/// Counters of one launch (the profile's per-launch object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStats {
    pub tensor_flops: u64,
    pub simt_flops: u64,
    pub global_read_bytes: u64,
    pub global_write_bytes: u64,
    pub shared_bank_conflicts: u64,
    /// Thread-instructions executed (one per active lane per instruction).
    pub thread_instructions: u64,
}

#[derive(Clone, Debug, Default)]
pub struct LaunchOutcome {
    pub stats: LaunchStats,
    pub reports: Vec<Report>,
    /// True when the launch could not run or was stopped (a launch-check failure or a memcheck fault, as a GPU
    /// stops at an illegal address); the driver returns an error code for it.
    pub failed: bool,
}

/// Run `kernel` of `module` once. `globals[i]` is the device address of `module.globals[i]`; `params` is the
/// parameter buffer laid out per `kernel.params` (the driver copies each `kernelParams[i]` to its offset).
pub fn launch(
    _module: &Module,
    _kernel: &Kernel,
    _globals: &[u64],
    _cfg: &LaunchConfig,
    _params: &[u8],
    _mem: &DeviceMemory,
    _opts: &ExecOptions,
) -> LaunchOutcome {
    LaunchOutcome {
        reports: vec![Report { kind: ReportKind::Error, message: "the executor is not written yet".into() }],
        failed: true,
        ..LaunchOutcome::default()
    }
}
