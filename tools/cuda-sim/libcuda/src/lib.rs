//! `libcuda.so` stand-in: the CUDA driver API that cudarc 0.19 calls, backed by the cuda-sim PTX interpreter.
//!
//! Everything runs synchronously on the calling thread: a stream operation runs when it is enqueued, except while
//! its stream is being captured, when it is recorded into a graph and runs at `cuGraphLaunch`. Device memory is
//! one `cuda_sim::mem::DeviceMemory` per device (`DDPM_CUDA_SIM_DEVICES`, default 1), each in its own address range:
//! a kernel sees only its own device's allocations (a pointer of another device faults, as without peer access),
//! while copies and memsets find the device from the address (unified addressing).
//!
//! Environment: `DDPM_CUDA_SIM_DEVICES` (devices reported), `DDPM_CUDA_SIM_THREADS` (host threads per launch),
//! `DDPM_CUDA_SIM_REPORTS` (file the sanitizer reports are appended to), `DDPM_CUDA_SIM_PROFILE` (file the
//! per-launch counters are appended to, one JSON object per line, and a `{"process": ...}` line at exit).
//!
//! Sanitizer reports are printed to stderr at once, prefixed `========= cuda-sim`; at process exit, if there were
//! any, `========= cuda-sim: N errors` is printed and the process exits with status 1.

#![allow(non_snake_case, clippy::missing_safety_doc)]

mod api;
mod attrs;
pub mod fatbin;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use cuda_sim::exec::{self, ExecOptions, LaunchConfig, Report, ReportKind};
use cuda_sim::ir::Module;
use cuda_sim::mem::DeviceMemory;
use cudarc::driver::sys::{CUhostFn, CUresult};

/// A module as loaded: its decoded form and the device addresses of its globals.
pub(crate) struct LoadedModule {
    pub module: Module,
    pub globals: Vec<u64>,
}

pub(crate) struct FuncRec {
    pub module: Arc<LoadedModule>,
    pub kernel: usize,
    pub max_dynamic_shared: u32,
}

/// A recorded stream operation (a graph node).
#[derive(Clone)]
pub(crate) enum Node {
    Kernel { dev: i32, module: Arc<LoadedModule>, kernel: usize, max_dyn: u32, cfg: LaunchConfig, params: Vec<u8> },
    Memset { dst: u64, pattern: Vec<u8>, count: u64 },
    HtoD { dst: u64, src: usize, len: usize },
    DtoH { dst: usize, src: u64, len: usize },
    DtoD { dst: u64, src: u64, len: u64 },
    Host { f: CUhostFn, data: usize },
}

#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    /// Allocations made or freed while capturing, released when the graph is destroyed.
    pub deferred_frees: Vec<u64>,
}

pub(crate) struct EventRec {
    pub timing: bool,
    pub at: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct State {
    pub next_id: usize,
    pub contexts: HashMap<usize, i32>,
    pub modules: HashMap<usize, Arc<LoadedModule>>,
    pub functions: HashMap<usize, FuncRec>,
    /// Created streams and their devices.
    pub streams: HashMap<usize, i32>,
    /// Streams being captured and what they recorded so far.
    pub captures: HashMap<usize, Graph>,
    pub events: HashMap<usize, EventRec>,
    pub graphs: HashMap<usize, Graph>,
    pub execs: HashMap<usize, Arc<Vec<Node>>>,
    /// The first fatal launch error (illegal address, ...): every later call returns it, like a real context.
    pub sticky: Option<CUresult>,
    pub release_threshold: u64,
    /// Page-locked host ranges (start → bytes): cuMemHostAlloc, cuMemAllocHost, cuMemHostRegister.
    pub pinned: std::collections::BTreeMap<usize, usize>,
}

impl State {
    /// Whether [p, p + n) lies inside one page-locked range.
    pub fn is_pinned(&self, p: usize, n: usize) -> bool {
        self.pinned.range(..=p).next_back().is_some_and(|(&start, &len)| p + n <= start + len)
    }

    pub fn new_id(&mut self) -> usize {
        self.next_id += 16;
        0x5100_0000 + self.next_id
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub kernel_launches: AtomicU64,
    pub graph_launches: AtomicU64,
    pub allocations: AtomicU64,
    pub frees: AtomicU64,
    pub memsets: AtomicU64,
    pub htod_copies: AtomicU64,
    pub dtoh_copies: AtomicU64,
    pub dtod_copies: AtomicU64,
    pub syncs: AtomicU64,
    /// Device-to-host copies the host waits for (synchronous, or into pageable memory): host syncs too.
    pub blocking_copies: AtomicU64,
    pub event_waits: AtomicU64,
    pub cublas_calls: AtomicU64,
}

/// Every device's memory; an address belongs to the device whose range holds it.
pub(crate) struct Memories {
    devices: Vec<DeviceMemory>,
}

impl Memories {
    fn new(n: usize) -> Memories {
        let base = |i: usize| cuda_sim::mem::GLOBAL_BASE + i as u64 * cuda_sim::mem::DEVICE_SPAN;
        Memories { devices: (0..n.max(1)).map(|i| DeviceMemory::at(base(i))).collect() }
    }

    /// Device `dev`'s table (device 0's for an unknown ordinal).
    pub fn device(&self, dev: i32) -> &DeviceMemory {
        self.devices.get(dev.max(0) as usize).unwrap_or(&self.devices[0])
    }

    /// The table `addr` falls in (device 0's outside every range, where the access then fails).
    pub fn of(&self, addr: u64) -> &DeviceMemory {
        let i = addr.saturating_sub(cuda_sim::mem::GLOBAL_BASE) / cuda_sim::mem::DEVICE_SPAN;
        self.devices.get(i as usize).unwrap_or(&self.devices[0])
    }

    pub fn write(&self, dst: u64, src: &[u8]) -> Result<(), cuda_sim::mem::MemError> {
        self.of(dst).write(dst, src)
    }

    pub fn read(&self, src: u64, dst: &mut [u8]) -> Result<(), cuda_sim::mem::MemError> {
        self.of(src).read(src, dst)
    }

    pub fn fill(&self, dst: u64, pattern: &[u8], count: u64) -> Result<(), cuda_sim::mem::MemError> {
        self.of(dst).fill(dst, pattern, count)
    }

    /// Device -> device, also between devices (a peer copy: the bytes are marked initialised where written).
    pub fn copy(&self, dst: u64, src: u64, len: u64) -> Result<(), cuda_sim::mem::MemError> {
        let (d, s) = (self.of(dst), self.of(src));
        if std::ptr::eq(d, s) {
            return d.copy(dst, src, len);
        }
        let mut buf = vec![0u8; len as usize];
        s.read(src, &mut buf)?;
        d.write(dst, &buf)
    }

    pub fn free(&self, addr: u64) -> Result<(), cuda_sim::mem::MemError> {
        self.of(addr).free(addr)
    }
}

pub(crate) struct Driver {
    pub mem: Memories,
    pub state: Mutex<State>,
    pub counters: Counters,
    pub reports: AtomicU64,
    pub devices: i32,
    pub threads: usize,
    report_file: Option<Mutex<std::fs::File>>,
    profile: Option<Mutex<std::fs::File>>,
}

fn open_append(var: &str) -> Option<Mutex<std::fs::File>> {
    let path = std::env::var_os(var)?;
    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            eprintln!("========= cuda-sim: cannot open {var}={}: {e}", path.to_string_lossy());
            None
        }
    }
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

pub(crate) fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        register_at_exit();
        let env_num = |v: &str, d: usize| std::env::var(v).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(d);
        Driver {
            mem: Memories::new(env_num("DDPM_CUDA_SIM_DEVICES", 1)),
            state: Mutex::new(State { release_threshold: 0, ..State::default() }),
            counters: Counters::default(),
            reports: AtomicU64::new(0),
            devices: env_num("DDPM_CUDA_SIM_DEVICES", 1) as i32,
            threads: env_num("DDPM_CUDA_SIM_THREADS", 0),
            report_file: open_append("DDPM_CUDA_SIM_REPORTS"),
            profile: open_append("DDPM_CUDA_SIM_PROFILE"),
        }
    })
}

impl Driver {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Print a finding at once, count it, and append it to the reports file.
    pub fn report(&self, kind: &str, message: &str) {
        self.reports.fetch_add(1, Ordering::SeqCst);
        // Executor reports name their kind themselves ("Memcheck: ..."); the driver's own are API errors.
        let lead = if kind == "api" { "API error: " } else { "" };
        let mut text = String::new();
        for (i, line) in message.lines().enumerate() {
            if i == 0 {
                let _ = writeln!(text, "========= cuda-sim: {lead}{line}");
            } else {
                let _ = writeln!(text, "=========     {line}");
            }
        }
        if message.is_empty() {
            let _ = writeln!(text, "========= cuda-sim: {kind} report");
        }
        let _ = std::io::stderr().write_all(text.as_bytes());
        if let Some(f) = &self.report_file {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(text.as_bytes());
            let _ = f.flush();
        }
    }

    pub fn profile_line(&self, line: &str) {
        if let Some(f) = &self.profile {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    pub fn profiling(&self) -> bool {
        self.profile.is_some()
    }

    pub fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Run one operation now. Must be called without the state lock held (host functions call back in).
    pub fn run_node(&self, node: &Node) -> CUresult {
        match node {
            Node::Kernel { dev, module, kernel, max_dyn, cfg, params } => {
                self.run_kernel(*dev, module, *kernel, *max_dyn, cfg, params)
            }
            Node::Memset { dst, pattern, count } => {
                self.count(&self.counters.memsets);
                self.mem_result("cuMemsetD*", self.mem.fill(*dst, pattern, *count))
            }
            Node::HtoD { dst, src, len } => {
                self.count(&self.counters.htod_copies);
                // SAFETY: the caller of cuMemcpyHtoD promised `len` readable bytes at `src`.
                let host = unsafe { std::slice::from_raw_parts(*src as *const u8, *len) };
                self.mem_result("cuMemcpyHtoD", self.mem.write(*dst, host))
            }
            Node::DtoH { dst, src, len } => {
                self.count(&self.counters.dtoh_copies);
                // SAFETY: the caller of cuMemcpyDtoH promised `len` writable bytes at `dst`.
                let host = unsafe { std::slice::from_raw_parts_mut(*dst as *mut u8, *len) };
                self.mem_result("cuMemcpyDtoH", self.mem.read(*src, host))
            }
            Node::DtoD { dst, src, len } => {
                self.count(&self.counters.dtod_copies);
                self.mem_result("cuMemcpyDtoD", self.mem.copy(*dst, *src, *len))
            }
            Node::Host { f, data } => {
                if let Some(f) = f {
                    // SAFETY: the function and its argument as cuLaunchHostFunc was given them.
                    unsafe { f(*data as *mut std::ffi::c_void) };
                }
                CUresult::CUDA_SUCCESS
            }
        }
    }

    fn mem_result(&self, call: &str, r: Result<(), cuda_sim::mem::MemError>) -> CUresult {
        match r {
            Ok(()) => CUresult::CUDA_SUCCESS,
            Err(e) => {
                self.report("api", &format!("{call}: CUDA_ERROR_INVALID_VALUE: {e}"));
                CUresult::CUDA_ERROR_INVALID_VALUE
            }
        }
    }

    fn run_kernel(
        &self,
        dev: i32,
        lm: &LoadedModule,
        k: usize,
        max_dyn: u32,
        cfg: &LaunchConfig,
        params: &[u8],
    ) -> CUresult {
        self.count(&self.counters.kernel_launches);
        let kernel = &lm.module.kernels[k];
        let opts = ExecOptions { threads: self.threads, max_dynamic_shared: max_dyn, ..ExecOptions::default() };
        let t0 = Instant::now();
        let out = exec::launch(&lm.module, kernel, &lm.globals, cfg, params, self.mem.device(dev), &opts);
        let seconds = t0.elapsed().as_secs_f64();
        for r in &out.reports {
            self.report(kind_name(r), &r.message);
        }
        if self.profiling() {
            let s = &out.stats;
            let [gx, gy, gz] = cfg.grid;
            let [bx, by, bz] = cfg.block;
            self.profile_line(&format!(
                "{{\"kernel\":{},\"grid\":[{gx},{gy},{gz}],\"block\":[{bx},{by},{bz}],\"dyn_shared\":{},\
                 \"tensor_flops\":{},\"simt_flops\":{},\"global_read_bytes\":{},\"global_write_bytes\":{},\
                 \"shared_bank_conflicts\":{},\"thread_instructions\":{},\"seconds\":{seconds:.6}}}",
                json_str(&kernel.name),
                cfg.dyn_shared_bytes,
                s.tensor_flops,
                s.simt_flops,
                s.global_read_bytes,
                s.global_write_bytes,
                s.shared_bank_conflicts,
                s.thread_instructions
            ));
        }
        if !out.failed {
            return CUresult::CUDA_SUCCESS;
        }
        let code = launch_error(&out.reports);
        if code != CUresult::CUDA_ERROR_INVALID_VALUE {
            self.lock().sticky.get_or_insert(code);
        }
        code
    }

    /// The context's sticky error, if a launch has corrupted it.
    pub fn sticky(&self) -> Option<CUresult> {
        self.lock().sticky
    }
}

fn kind_name(r: &Report) -> &'static str {
    match r.kind {
        ReportKind::Memcheck => "memcheck",
        ReportKind::Racecheck => "racecheck",
        ReportKind::Initcheck => "initcheck",
        ReportKind::Launch => "launch",
        ReportKind::Error => "error",
    }
}

/// The error a failed launch returns: launch-check failures are CUDA_ERROR_INVALID_VALUE (not sticky), a memory
/// fault CUDA_ERROR_ILLEGAL_ADDRESS, anything else CUDA_ERROR_LAUNCH_FAILED (both sticky).
pub(crate) fn launch_error(reports: &[Report]) -> CUresult {
    if reports.iter().any(|r| r.kind == ReportKind::Memcheck) {
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
    } else if !reports.is_empty() && reports.iter().all(|r| r.kind == ReportKind::Launch) {
        CUresult::CUDA_ERROR_INVALID_VALUE
    } else {
        CUresult::CUDA_ERROR_LAUNCH_FAILED
    }
}

pub(crate) fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Registered with `atexit` at the first `cuInit`: the process counters, then the error count and exit status.
extern "C" fn at_exit() {
    let Some(d) = DRIVER.get() else { return };
    if d.profiling() {
        let c = &d.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        d.profile_line(&format!(
            "{{\"process\":{{\"kernel_launches\":{},\"graph_launches\":{},\"allocations\":{},\"frees\":{},\
             \"memsets\":{},\"htod_copies\":{},\"dtoh_copies\":{},\"dtod_copies\":{},\"syncs\":{},\
             \"blocking_copies\":{},\"event_waits\":{},\"cublas_calls\":{}}}}}",
            g(&c.kernel_launches),
            g(&c.graph_launches),
            g(&c.allocations),
            g(&c.frees),
            g(&c.memsets),
            g(&c.htod_copies),
            g(&c.dtoh_copies),
            g(&c.dtod_copies),
            g(&c.syncs),
            g(&c.blocking_copies),
            g(&c.event_waits),
            g(&c.cublas_calls)
        ));
    }
    let n = d.reports.load(Ordering::SeqCst);
    if n > 0 {
        let _ = std::io::stderr().write_all(format!("========= cuda-sim: {n} errors\n").as_bytes());
        // SAFETY: ends the process without running the remaining exit handlers, as the status must be nonzero.
        unsafe { libc::_exit(1) };
    }
}

pub(crate) fn register_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(at_exit) };
    });
}

/// For the cuBLAS stand-in: count a call and write its profile line (`kernel`, FLOPs as `simt_flops`).
#[no_mangle]
pub unsafe extern "C" fn cudaSimRecordCublas(name: *const std::ffi::c_char, flops: u64, seconds: f64) {
    let d = driver();
    d.count(&d.counters.cublas_calls);
    if d.profiling() && !name.is_null() {
        let name = std::ffi::CStr::from_ptr(name).to_string_lossy();
        d.profile_line(&format!(
            "{{\"kernel\":{},\"tensor_flops\":0,\"simt_flops\":{flops},\"global_read_bytes\":0,\
             \"global_write_bytes\":0,\"shared_bank_conflicts\":0,\"thread_instructions\":0,\"seconds\":{seconds:.6}}}",
            json_str(&name)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_the_host_waits_for_counts_as_blocking_and_an_async_one_into_pinned_memory_does_not() {
        use std::ffi::c_void;
        let d = driver();
        let blocking = || d.counters.blocking_copies.load(Ordering::Relaxed);
        let null = std::ptr::null_mut();
        // SAFETY: the stand-in's own entry points with valid buffers of 16 bytes.
        unsafe {
            let mut dev = 0;
            assert_eq!(api::cuMemAlloc_v2(&mut dev, 16), CUresult::CUDA_SUCCESS);
            let src = [7u8; 16];
            assert_eq!(api::cuMemcpyHtoD_v2(dev, src.as_ptr().cast(), 16), CUresult::CUDA_SUCCESS);
            let before = blocking();
            let mut pageable = [0u8; 16];
            assert_eq!(api::cuMemcpyDtoHAsync_v2(pageable.as_mut_ptr().cast(), dev, 16, null), CUresult::CUDA_SUCCESS);
            assert_eq!((blocking(), pageable), (before + 1, src), "async into pageable memory waits");
            let mut pinned: *mut c_void = std::ptr::null_mut();
            assert_eq!(api::cuMemHostAlloc(&mut pinned, 32, 0), CUresult::CUDA_SUCCESS);
            assert_eq!(
                api::cuMemcpyDtoHAsync_v2(pinned.cast::<u8>().add(8).cast(), dev, 16, null),
                CUresult::CUDA_SUCCESS
            );
            assert_eq!(blocking(), before + 1, "async into pinned memory does not wait");
            assert_eq!(*pinned.cast::<u8>().add(8), 7);
            assert_eq!(
                api::cuMemcpyDtoHAsync_v2(pinned.cast::<u8>().add(24).cast(), dev, 16, null),
                CUresult::CUDA_SUCCESS
            );
            assert_eq!(blocking(), before + 2, "a copy past the pinned range's end is pageable");
            assert_eq!(api::cuMemcpyDtoH_v2(pinned, dev, 16), CUresult::CUDA_SUCCESS);
            assert_eq!(blocking(), before + 3, "the synchronous call waits");
            assert_eq!(api::cuMemFreeHost(pinned), CUresult::CUDA_SUCCESS);
            assert_eq!(api::cuMemFree_v2(dev), CUresult::CUDA_SUCCESS);
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn launch_errors_follow_the_report_kinds() {
        let r = |kind| Report { kind, message: String::new() };
        assert_eq!(launch_error(&[r(ReportKind::Launch)]), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert_eq!(launch_error(&[r(ReportKind::Memcheck)]), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        assert_eq!(launch_error(&[r(ReportKind::Error)]), CUresult::CUDA_ERROR_LAUNCH_FAILED);
    }
}
