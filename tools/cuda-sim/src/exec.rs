//! Runs one kernel launch: CTAs in parallel on host threads, warps of 32 lanes inside a CTA, with memcheck,
//! racecheck, initcheck and launch checks, and the profile counters.
//!
//! Scheduling inside a warp: every lane has its own pc; the lanes whose pc is the minimum among the runnable lanes
//! run together as the active mask (structured code reconverges without post-dominator analysis, and it is a legal
//! schedule under independent thread scheduling). Lanes leave the runnable set when they exit, wait at a CTA
//! barrier, or wait at a warp-synchronous instruction (shfl/vote/redux/mma/ldmatrix/bar.warp.sync) for the rest of
//! its member mask.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::alu;
use crate::ir::{
    AddrBase, Address, AtomOp, Inst, Kernel, MmaShape, Module, Op, ReduxOp, ShflMode, Space, Special, Src, SymbolRef,
    Ty, VoteMode,
};
use crate::mem::{DeviceMemory, MemView, Region, GENERIC_LOCAL_BASE, GENERIC_SHARED_BASE, GENERIC_WINDOW};

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
    /// Launch checks (block/grid/shared-memory limits, `.maxntid`/`.reqntid`).
    pub launchcheck: bool,
    pub memcheck: bool,
    pub racecheck: bool,
    pub initcheck: bool,
    /// Host threads running CTAs in parallel (0 = all cores).
    pub threads: usize,
    /// The kernel's max dynamic shared size attribute as the driver last set it (bytes).
    pub max_dynamic_shared: u32,
    pub limits: Limits,
    /// Reports kept per launch; the rest are counted in a final "... more reports dropped" line.
    pub max_reports: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            launchcheck: true,
            memcheck: true,
            racecheck: true,
            initcheck: true,
            threads: 0,
            max_dynamic_shared: 48 * 1024,
            limits: Limits::default(),
            max_reports: 20,
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

const WARP: usize = 32;
/// A warp yields to the other warps of its CTA after this many backward branches.
const YIELD_EVERY: u32 = 256;
/// Racecheck: high bit of a thread id in the shadow marks an atomic access.
const ATOMIC_BIT: u16 = 1 << 15;
/// Racecheck: several different readers in this epoch.
const MANY: u16 = ATOMIC_BIT - 1;

/// Run `kernel` of `module` once. `globals[i]` is the device address of `module.globals[i]`; `params` is the
/// parameter buffer laid out per `kernel.params` (the driver copies each `kernelParams[i]` to its offset).
pub fn launch(
    module: &Module,
    kernel: &Kernel,
    globals: &[u64],
    cfg: &LaunchConfig,
    params: &[u8],
    mem: &DeviceMemory,
    opts: &ExecOptions,
) -> LaunchOutcome {
    if let Some(msg) = launch_check(kernel, cfg, opts).filter(|_| opts.launchcheck) {
        return LaunchOutcome {
            reports: vec![Report { kind: ReportKind::Launch, message: msg }],
            failed: true,
            ..LaunchOutcome::default()
        };
    }
    let nthreads = cfg.block[0] * cfg.block[1] * cfg.block[2];
    let ncta = cfg.grid[0] as u64 * cfg.grid[1] as u64 * cfg.grid[2] as u64;
    if nthreads == 0 || ncta == 0 {
        return LaunchOutcome::default();
    }
    let shared_len = if cfg.dyn_shared_bytes > 0 {
        kernel.static_shared_bytes.max(kernel.dyn_shared_offset + cfg.dyn_shared_bytes)
    } else {
        kernel.static_shared_bytes
    };
    let ctx = Ctx {
        module,
        kernel,
        globals,
        cfg,
        params,
        view: mem.view(),
        opts,
        shared_len,
        nthreads,
        nwarps: nthreads.div_ceil(WARP as u32),
        // (the shadow holds 15-bit thread ids; only a launch with the launch checks off can exceed that)
        racecheck: opts.racecheck && nthreads < MANY as u32,
        stop: AtomicBool::new(false),
        next_cta: AtomicU64::new(0),
        nreports: AtomicUsize::new(0),
        sink: Mutex::new(Sink::default()),
        t0: Instant::now(),
    };
    let workers = if opts.threads == 0 {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    } else {
        opts.threads
    };
    let workers = workers.min(ncta.min(usize::MAX as u64) as usize).max(1);
    let total = Mutex::new(LaunchStats::default());
    let work = || {
        let mut cta = Cta::new(&ctx);
        loop {
            if ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            let i = ctx.next_cta.fetch_add(1, Ordering::Relaxed);
            if i >= ncta {
                break;
            }
            let g = cfg.grid;
            let id = [
                (i % g[0] as u64) as u32,
                ((i / g[0] as u64) % g[1] as u64) as u32,
                (i / (g[0] as u64 * g[1] as u64)) as u32,
            ];
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cta.run(&ctx, id)));
            if let Err(e) = r {
                let what = e
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| e.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                ctx.report(
                    ReportKind::Error,
                    true,
                    format!(
                        "Error: internal simulator error in kernel {} block ({},{},{}): {what}",
                        kernel.name, id[0], id[1], id[2]
                    ),
                );
                cta = Cta::new(&ctx);
            }
        }
        let mut t = total.lock().unwrap();
        add_stats(&mut t, &cta.stats);
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let sink = ctx.sink.into_inner().unwrap();
    let mut reports = sink.reports;
    if sink.dropped > 0 {
        reports.push(Report {
            kind: reports.last().map(|r| r.kind).unwrap_or(ReportKind::Error),
            message: format!("... {} more reports of kernel {} dropped", sink.dropped, kernel.name),
        });
    }
    LaunchOutcome { stats: total.into_inner().unwrap(), reports, failed: sink.failed }
}

fn add_stats(t: &mut LaunchStats, s: &LaunchStats) {
    t.tensor_flops += s.tensor_flops;
    t.simt_flops += s.simt_flops;
    t.global_read_bytes += s.global_read_bytes;
    t.global_write_bytes += s.global_write_bytes;
    t.shared_bank_conflicts += s.shared_bank_conflicts;
    t.thread_instructions += s.thread_instructions;
}

fn launch_check(kernel: &Kernel, cfg: &LaunchConfig, opts: &ExecOptions) -> Option<String> {
    let l = &opts.limits;
    let b = cfg.block;
    let g = cfg.grid;
    let name = &kernel.name;
    let threads = b[0] as u64 * b[1] as u64 * b[2] as u64;
    for d in 0..3 {
        if b[d] > l.max_block[d] {
            return Some(format!(
                "Launch: kernel {name}: block dimension {} is {} (limit {}); block ({},{},{})",
                "xyz".as_bytes()[d] as char,
                b[d],
                l.max_block[d],
                b[0],
                b[1],
                b[2]
            ));
        }
        if g[d] > l.max_grid[d] {
            return Some(format!(
                "Launch: kernel {name}: grid dimension {} is {} (limit {}); grid ({},{},{})",
                "xyz".as_bytes()[d] as char,
                g[d],
                l.max_grid[d],
                g[0],
                g[1],
                g[2]
            ));
        }
    }
    if threads > l.max_threads_per_block as u64 {
        return Some(format!(
            "Launch: kernel {name}: {threads} threads per block ({},{},{}) exceed the device limit of {}",
            b[0], b[1], b[2], l.max_threads_per_block
        ));
    }
    if let Some(m) = kernel.maxntid {
        let max = m[0] as u64 * m[1] as u64 * m[2] as u64;
        if threads > max {
            return Some(format!(
                "Launch: kernel {name}: {threads} threads per block ({},{},{}) exceed its .maxntid {},{},{} (__launch_bounds__)",
                b[0], b[1], b[2], m[0], m[1], m[2]
            ));
        }
    }
    if let Some(r) = kernel.reqntid {
        if r != b {
            return Some(format!(
                "Launch: kernel {name}: block ({},{},{}) differs from its .reqntid {},{},{}",
                b[0], b[1], b[2], r[0], r[1], r[2]
            ));
        }
    }
    let stat = kernel.static_shared_bytes as u64;
    let dynb = cfg.dyn_shared_bytes as u64;
    let total = stat.max(if dynb > 0 { kernel.dyn_shared_offset as u64 + dynb } else { 0 });
    let ok = if opts.max_dynamic_shared <= l.shared_per_block {
        total <= l.shared_per_block as u64
    } else {
        stat <= l.shared_per_block as u64
            && dynb <= opts.max_dynamic_shared as u64
            && total <= l.shared_per_block_optin as u64
    };
    if !ok {
        return Some(format!(
            "Launch: kernel {name}: {total} bytes of shared memory per block ({stat} static + {dynb} dynamic) exceed the \
             limit ({} bytes, {} with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES raised; the attribute is {})",
            l.shared_per_block, l.shared_per_block_optin, opts.max_dynamic_shared
        ));
    }
    None
}

#[derive(Default)]
struct Sink {
    reports: Vec<Report>,
    dropped: u64,
    failed: bool,
    /// Initcheck: allocations already reported (by base address).
    init_seen: HashSet<u64>,
    /// Racecheck: instructions already reported (pc).
    race_seen: HashSet<u32>,
}

/// Everything a launch shares between its host threads.
struct Ctx<'a> {
    module: &'a Module,
    kernel: &'a Kernel,
    globals: &'a [u64],
    cfg: &'a LaunchConfig,
    params: &'a [u8],
    view: MemView<'a>,
    opts: &'a ExecOptions,
    shared_len: u32,
    nthreads: u32,
    nwarps: u32,
    racecheck: bool,
    stop: AtomicBool,
    next_cta: AtomicU64,
    nreports: AtomicUsize,
    sink: Mutex<Sink>,
    t0: Instant,
}

impl Ctx<'_> {
    fn loc(&self, pc: u32) -> String {
        match self.kernel.locs.get(pc as usize) {
            Some(l) if (l.file as usize) < self.module.files.len() => {
                format!("{}:{}", self.module.files[l.file as usize], l.line)
            }
            Some(l) if l.line > 0 => format!("<unknown file>:{}", l.line),
            _ => format!("<no .loc> (instruction {pc})"),
        }
    }

    fn thread_xyz(&self, tid: u32) -> [u32; 3] {
        let b = self.cfg.block;
        [tid % b[0], (tid / b[0]) % b[1], tid / (b[0] * b[1])]
    }

    /// Record a report; `fatal` stops the launch (`failed`).
    fn report(&self, kind: ReportKind, fatal: bool, message: String) {
        let mut s = self.sink.lock().unwrap();
        if fatal {
            s.failed = true;
            self.stop.store(true, Ordering::Relaxed);
        }
        if s.reports.len() < self.opts.max_reports {
            s.reports.push(Report { kind, message });
        } else {
            s.dropped += 1;
        }
        self.nreports.fetch_add(1, Ordering::Relaxed);
    }

    fn where_(&self, pc: u32, tid: u32, ctaid: [u32; 3]) -> String {
        let t = self.thread_xyz(tid);
        format!(
            "in kernel {} at {} by thread ({},{},{}) in block ({},{},{})",
            self.kernel.name,
            self.loc(pc),
            t[0],
            t[1],
            t[2],
            ctaid[0],
            ctaid[1],
            ctaid[2]
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sp {
    Global,
    Shared,
    Local,
    Param,
}

impl Sp {
    fn name(self) -> &'static str {
        match self {
            Sp::Global => "__global__",
            Sp::Shared => "__shared__",
            Sp::Local => "__local__",
            Sp::Param => ".param",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Acc {
    Read,
    Write,
    Atomic,
}

/// Racecheck shadow of the CTA's shared memory, one entry per byte, as four parallel arrays (so the per-access
/// loops over a few bytes are branch-free and vectorise): the epoch and thread of the last write and of the
/// last read(s) (`MANY` for several readers) of each byte. 16 bits each: a block has at most 1024 threads, and the
/// epoch wraps (clearing the shadow) every 65535 barriers.
#[derive(Default)]
struct RaceShadow {
    w_epoch: Vec<u16>,
    w_tid: Vec<u16>,
    r_epoch: Vec<u16>,
    r_tid: Vec<u16>,
    /// The last read checked, (offset, size, thread), while it found no write of this epoch in its bytes and
    /// nothing was written since in this epoch: the same bytes read by another thread then only become `MANY`.
    /// Cleared on every write and every new epoch.
    last_read: Option<(usize, usize, u16)>,
}

impl RaceShadow {
    fn new(n: usize) -> RaceShadow {
        RaceShadow { w_epoch: vec![0; n], w_tid: vec![0; n], r_epoch: vec![0; n], r_tid: vec![0; n], last_read: None }
    }

    fn clear(&mut self) {
        self.w_epoch.fill(0);
        self.w_tid.fill(0);
        self.r_epoch.fill(0);
        self.r_tid.fill(0);
        self.last_read = None;
    }
}

struct Warp {
    regs: Vec<[u64; WARP]>,
    pc: [u32; WARP],
    /// Lanes that exist (the last warp of a block may be partial).
    valid: u32,
    run: u32,
    exited: u32,
    at_bar: u32,
    bar_id: [u8; WARP],
    at_sync: u32,
    index: u32,
    clock: u64,
    /// Last global region touched (speeds up the allocation lookup).
    cache: Region,
}

/// What an instruction did to the active lanes' control flow.
enum Flow {
    /// Every active lane continues at pc + 1.
    Next,
    /// Lanes `taken` jump to `target`, the other active lanes continue at pc + 1.
    Jump(u32, u32),
    /// Lanes `mask` exited, the others continue at pc + 1.
    Exit(u32),
    /// Some lanes now wait (their state and pc are set); the rest of the active lanes continue at pc + 1.
    Block(u32),
    /// The launch stops (a fault).
    Stop,
}

/// Per-host-thread CTA state, reused from CTA to CTA.
struct Cta {
    ctaid: [u32; 3],
    shared: Vec<u8>,
    local: Vec<u8>,
    warps: Vec<Warp>,
    race: RaceShadow,
    /// Racecheck epoch (barrier interval); the shadow is cleared when it wraps.
    epoch: u16,
    bar_expect: [u32; 16],
    bar_arrived: [u32; 16],
    stats: LaunchStats,
}

#[inline]
fn lanes(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(l)
        }
    })
}

fn empty_region() -> Region {
    Region { base: 0, end: 0, data: std::ptr::null_mut(), init: std::ptr::null_mut() }
}

impl Cta {
    fn new(ctx: &Ctx) -> Cta {
        let k = ctx.kernel;
        let warps = (0..ctx.nwarps)
            .map(|w| {
                let n = (ctx.nthreads - w * WARP as u32).min(WARP as u32);
                Warp {
                    regs: vec![[0u64; WARP]; k.num_regs as usize],
                    pc: [0; WARP],
                    valid: if n == 32 { u32::MAX } else { (1u32 << n) - 1 },
                    run: 0,
                    exited: 0,
                    at_bar: 0,
                    bar_id: [0; WARP],
                    at_sync: 0,
                    index: w,
                    clock: 0,
                    cache: empty_region(),
                }
            })
            .collect();
        Cta {
            ctaid: [0; 3],
            shared: vec![0; ctx.shared_len as usize],
            local: vec![0; k.local_bytes as usize * ctx.nthreads as usize],
            warps,
            race: if ctx.racecheck { RaceShadow::new(ctx.shared_len as usize) } else { RaceShadow::default() },
            epoch: 0,
            bar_expect: [0; 16],
            bar_arrived: [0; 16],
            stats: LaunchStats::default(),
        }
    }

    fn run(&mut self, ctx: &Ctx, ctaid: [u32; 3]) {
        self.ctaid = ctaid;
        self.shared.fill(0);
        self.epoch = self.epoch.wrapping_add(1);
        self.race.last_read = None;
        if self.epoch == 0 {
            self.race.clear();
            self.epoch = 1;
        }
        self.bar_expect = [0; 16];
        self.bar_arrived = [0; 16];
        let mut warps = std::mem::take(&mut self.warps);
        for w in &mut warps {
            w.pc = [0; WARP];
            w.run = w.valid;
            w.exited = 0;
            w.at_bar = 0;
            w.at_sync = 0;
        }
        loop {
            let mut runnable = false;
            for w in &mut warps {
                if w.run != 0 {
                    self.run_warp(ctx, w);
                }
                if ctx.stop.load(Ordering::Relaxed) {
                    self.warps = warps;
                    return;
                }
                runnable |= w.run != 0;
            }
            if runnable {
                continue;
            }
            let live: u32 = warps.iter().map(|w| (w.valid & !w.exited).count_ones()).sum();
            if live == 0 {
                break;
            }
            // Everyone left is waiting: release the barriers that are complete.
            let mut waiting = [0u32; 16];
            for w in &warps {
                for l in lanes(w.at_bar) {
                    waiting[w.bar_id[l] as usize] += 1;
                }
            }
            let mut released = false;
            for (id, &nwait) in waiting.iter().enumerate() {
                if nwait == 0 {
                    continue;
                }
                let need = if self.bar_expect[id] > 0 { self.bar_expect[id] } else { live };
                if nwait + self.bar_arrived[id] >= need {
                    for w in &mut warps {
                        for l in lanes(w.at_bar) {
                            if w.bar_id[l] as usize == id {
                                w.at_bar &= !(1 << l);
                                w.run |= 1 << l;
                                w.pc[l] += 1;
                            }
                        }
                    }
                    self.bar_arrived[id] = 0;
                    self.bar_expect[id] = 0;
                    released = true;
                }
            }
            if released {
                self.epoch = self.epoch.wrapping_add(1);
                self.race.last_read = None;
                if self.epoch == 0 {
                    self.race.clear();
                    self.epoch = 1;
                }
                continue;
            }
            self.deadlock(ctx, &warps, live);
            break;
        }
        self.warps = warps;
    }

    fn deadlock(&self, ctx: &Ctx, warps: &[Warp], live: u32) {
        let mut msg = format!(
            "Error: deadlock in kernel {} block ({},{},{}): {live} live threads, none can proceed;",
            ctx.kernel.name, self.ctaid[0], self.ctaid[1], self.ctaid[2]
        );
        let mut shown = 0;
        for w in warps {
            for l in lanes(w.at_bar | w.at_sync) {
                if shown < 4 {
                    let t = ctx.thread_xyz(w.index * 32 + l as u32);
                    let what = if w.at_bar & (1 << l) != 0 { "a barrier" } else { "a warp-synchronous instruction" };
                    msg += &format!(" thread ({},{},{}) waits at {what} at {};", t[0], t[1], t[2], ctx.loc(w.pc[l]));
                }
                shown += 1;
            }
        }
        let exited: u32 = warps.iter().map(|w| w.exited.count_ones()).sum();
        msg += &format!(" {exited} threads have exited");
        ctx.report(ReportKind::Error, true, msg);
    }

    fn run_warp(&mut self, ctx: &Ctx, w: &mut Warp) {
        let insts = &ctx.kernel.insts;
        let mut back_jumps = 0u32;
        'outer: while w.run != 0 {
            if ctx.stop.load(Ordering::Relaxed) {
                return;
            }
            let mut pc = u32::MAX;
            for l in lanes(w.run) {
                pc = pc.min(w.pc[l]);
            }
            let mut active = 0u32;
            for l in lanes(w.run) {
                if w.pc[l] == pc {
                    active |= 1 << l;
                }
            }
            loop {
                let Some(inst) = insts.get(pc as usize) else {
                    // Ran off the end: the threads finish.
                    w.exited |= active;
                    w.run &= !active;
                    continue 'outer;
                };
                w.clock += 1;
                self.stats.thread_instructions += active.count_ones() as u64;
                let exec = match inst.guard {
                    None => active,
                    Some((r, neg)) => {
                        // all 32 lanes branch-free (vectorises), then the active ones
                        let p = &w.regs[r as usize];
                        let mut m = 0u32;
                        for (l, &v) in p.iter().enumerate() {
                            m |= (((v != 0) != neg) as u32) << l;
                        }
                        m & active
                    }
                };
                match self.step(ctx, w, pc, inst, active, exec) {
                    Flow::Next => {
                        pc += 1;
                        if w.run != active {
                            for l in lanes(w.run & !active) {
                                if w.pc[l] == pc {
                                    active |= 1 << l;
                                }
                            }
                        }
                    }
                    Flow::Jump(taken, target) => {
                        let back = taken != 0 && target <= pc;
                        if w.run == active && (taken == active || taken == 0) {
                            pc = if taken == 0 { pc + 1 } else { target };
                            if back {
                                back_jumps += 1;
                                // Let the other warps run now and then (a warp may spin on what they write).
                                if back_jumps.is_multiple_of(YIELD_EVERY)
                                    && (ctx.nwarps > 1 || ctx.stop.load(Ordering::Relaxed))
                                {
                                    set_pc(w, active, pc);
                                    return;
                                }
                            }
                        } else {
                            set_pc(w, active & !taken, pc + 1);
                            set_pc(w, taken, target);
                            if back {
                                back_jumps += 1;
                                if back_jumps.is_multiple_of(YIELD_EVERY) && ctx.nwarps > 1 {
                                    return;
                                }
                            }
                            continue 'outer;
                        }
                    }
                    Flow::Exit(m) => {
                        w.exited |= m;
                        w.run &= !m;
                        set_pc(w, active & !m, pc + 1);
                        continue 'outer;
                    }
                    Flow::Block(m) => {
                        set_pc(w, active & !m, pc + 1);
                        continue 'outer;
                    }
                    Flow::Stop => {
                        set_pc(w, active, pc);
                        return;
                    }
                }
            }
        }
    }

    /// Source operand values of all lanes in `m` (other lanes are left as they were).
    #[inline]
    fn src(&self, ctx: &Ctx, w: &Warp, s: &Src, m: u32, out: &mut [u64; WARP]) {
        match *s {
            Src::Reg(r) => *out = w.regs[r as usize],
            Src::Imm(v) => *out = [v; WARP],
            Src::Symbol(sym) => *out = [symbol_value(ctx, sym); WARP],
            Src::Special(sp) => {
                for l in lanes(m) {
                    out[l] = self.special(ctx, w, sp, l);
                }
            }
        }
    }

    #[inline]
    fn src1(&self, ctx: &Ctx, w: &Warp, s: &Src, l: usize) -> u64 {
        match *s {
            Src::Reg(r) => w.regs[r as usize][l],
            Src::Imm(v) => v,
            Src::Symbol(sym) => symbol_value(ctx, sym),
            Src::Special(sp) => self.special(ctx, w, sp, l),
        }
    }

    fn special(&self, ctx: &Ctx, w: &Warp, sp: Special, l: usize) -> u64 {
        let tid = w.index * 32 + l as u32;
        match sp {
            Special::Tid(d) => ctx.thread_xyz(tid)[d as usize % 3] as u64,
            Special::Ntid(d) => ctx.cfg.block[d as usize % 3] as u64,
            Special::Ctaid(d) => self.ctaid[d as usize % 3] as u64,
            Special::Nctaid(d) => ctx.cfg.grid[d as usize % 3] as u64,
            Special::LaneId => l as u64,
            Special::WarpId => w.index as u64,
            Special::NWarpId => ctx.nwarps as u64,
            Special::SmId => 0,
            Special::LaneMaskEq => 1u64 << l,
            Special::LaneMaskLt => (1u64 << l) - 1,
            Special::LaneMaskLe => (1u64 << (l + 1)) - 1,
            Special::LaneMaskGt => (!((1u64 << (l + 1)) - 1)) & 0xffff_ffff,
            Special::LaneMaskGe => (!((1u64 << l) - 1)) & 0xffff_ffff,
            Special::Clock => w.clock & 0xffff_ffff,
            Special::Clock64 => w.clock,
            Special::GlobalTimer => ctx.t0.elapsed().as_nanos() as u64,
            Special::DynamicSmemSize => ctx.cfg.dyn_shared_bytes as u64,
            Special::TotalSmemSize => ctx.shared_len as u64,
        }
    }

    /// Base address and implied space of an address operand for lane `l`.
    #[inline(always)]
    fn addr(&self, ctx: &Ctx, w: &Warp, space: Space, a: &Address, l: usize) -> (Sp, u64) {
        let (base, sym_sp) = match a.base {
            AddrBase::Reg(r) => (w.regs[r as usize][l], None),
            AddrBase::Abs => (0, None),
            AddrBase::Symbol(s) => (
                symbol_value(ctx, s),
                Some(match s {
                    SymbolRef::Global(_) => Sp::Global,
                    SymbolRef::Shared(_) => Sp::Shared,
                    SymbolRef::Local(_) => Sp::Local,
                    SymbolRef::Param(_) => Sp::Param,
                }),
            ),
        };
        let v = base.wrapping_add(a.offset as u64);
        match space {
            Space::Global | Space::Const => (Sp::Global, v),
            // The shared window is addressed with 32 bits: register + offset wraps (nvcc relies on it).
            Space::Shared => (Sp::Shared, v & 0xFFFF_FFFF),
            Space::Local => (Sp::Local, v),
            Space::Param => (Sp::Param, v),
            Space::Generic => match sym_sp {
                Some(sp) => (sp, v),
                None => generic(v),
            },
        }
    }

    /// Host pointer for an access of `size` bytes (aligned to `align`) by lane `l`; reports and returns None on a
    /// fault (the launch stops when memcheck is on).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn ptr(
        &mut self,
        ctx: &Ctx,
        w: &mut Warp,
        pc: u32,
        l: usize,
        sp: Sp,
        addr: u64,
        size: u32,
        align: u32,
        acc: Acc,
    ) -> Option<*mut u8> {
        // (alignments are powers of two; `%` would be a division on every access)
        let misaligned =
            if align.is_power_of_two() { addr & (align as u64 - 1) != 0 } else { !addr.is_multiple_of(align as u64) };
        if misaligned && (ctx.opts.memcheck || acc == Acc::Atomic) {
            self.fault(ctx, w, pc, l, sp, addr, size, acc, "misaligned", format!("(must be {align}-byte aligned)"));
            return None;
        }
        match sp {
            Sp::Global => self.ptr_global(ctx, w, pc, l, addr, size, acc),
            Sp::Shared => {
                if addr.checked_add(size as u64).is_none_or(|e| e > ctx.shared_len as u64) {
                    self.fault_shared(ctx, w, pc, l, addr, size, acc);
                    return None;
                }
                if ctx.racecheck {
                    self.race(ctx, pc, w.index * 32 + l as u32, l, addr as usize, size as usize, acc);
                }
                // SAFETY: bounds checked above.
                Some(unsafe { self.shared.as_mut_ptr().add(addr as usize) })
            }
            Sp::Local | Sp::Param => self.ptr_other(ctx, w, pc, l, sp, addr, size, acc),
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn ptr_global(
        &mut self,
        ctx: &Ctx,
        w: &mut Warp,
        pc: u32,
        l: usize,
        addr: u64,
        size: u32,
        acc: Acc,
    ) -> Option<*mut u8> {
        let end = addr.wrapping_add(size as u64);
        if !(addr >= w.cache.base && end <= w.cache.end && end >= addr) {
            match ctx.view.find(addr, size as u64) {
                Some(r) => w.cache = *r,
                None => {
                    if ctx.opts.memcheck {
                        let near = ctx.view.describe(addr);
                        self.fault(ctx, w, pc, l, Sp::Global, addr, size, acc, "out of bounds", near);
                    }
                    return None;
                }
            }
        }
        let off = (addr - w.cache.base) as usize;
        // SAFETY: [off, off+size) lies inside the region, which the view keeps alive.
        unsafe {
            let init = w.cache.init.add(off);
            match acc {
                Acc::Read => {
                    self.stats.global_read_bytes += size as u64;
                    if ctx.opts.initcheck && !all_set(init, size) {
                        self.uninit(ctx, w, pc, l, addr, size);
                    }
                }
                Acc::Write => {
                    self.stats.global_write_bytes += size as u64;
                    set_all(init, size);
                }
                Acc::Atomic => {
                    self.stats.global_read_bytes += size as u64;
                    self.stats.global_write_bytes += size as u64;
                    set_all(init, size);
                }
            }
            Some(w.cache.data.add(off))
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn fault_shared(&mut self, ctx: &Ctx, w: &Warp, pc: u32, l: usize, addr: u64, size: u32, acc: Acc) {
        if ctx.opts.memcheck {
            let msg = format!("(the block has {} bytes of shared memory)", ctx.shared_len);
            self.fault(ctx, w, pc, l, Sp::Shared, addr, size, acc, "out of bounds", msg);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ptr_other(
        &mut self,
        ctx: &Ctx,
        w: &mut Warp,
        pc: u32,
        l: usize,
        sp: Sp,
        addr: u64,
        size: u32,
        acc: Acc,
    ) -> Option<*mut u8> {
        let memcheck = ctx.opts.memcheck;
        let tid = w.index * 32 + l as u32;
        match sp {
            Sp::Local => {
                let lb = ctx.kernel.local_bytes as u64;
                if addr.checked_add(size as u64).is_none_or(|e| e > lb) {
                    if memcheck {
                        let msg = format!("(the thread has {lb} bytes of local memory)");
                        self.fault(ctx, w, pc, l, sp, addr, size, acc, "out of bounds", msg);
                    }
                    return None;
                }
                // SAFETY: bounds checked above.
                Some(unsafe { self.local.as_mut_ptr().add((tid as u64 * lb + addr) as usize) })
            }
            _ => {
                if acc != Acc::Read || addr.checked_add(size as u64).is_none_or(|e| e > ctx.params.len() as u64) {
                    if memcheck {
                        let msg = format!("(the parameter buffer has {} bytes, read-only)", ctx.params.len());
                        self.fault(ctx, w, pc, l, sp, addr, size, acc, "out of bounds", msg);
                    }
                    return None;
                }
                Some(ctx.params[addr as usize..].as_ptr() as *mut u8)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn fault(
        &self,
        ctx: &Ctx,
        w: &Warp,
        pc: u32,
        l: usize,
        sp: Sp,
        addr: u64,
        size: u32,
        acc: Acc,
        what: &str,
        extra: String,
    ) {
        let a = match acc {
            Acc::Read => "read",
            Acc::Write => "write",
            Acc::Atomic => "atomic",
        };
        let shown = match sp {
            Sp::Global => addr,
            Sp::Shared => GENERIC_SHARED_BASE + addr,
            Sp::Local => GENERIC_LOCAL_BASE + addr,
            Sp::Param => addr,
        };
        let msg = format!(
            "Memcheck: invalid {} {a} of size {size} bytes ({what}) {}: address {shown:#x}{}; {extra}",
            sp.name(),
            ctx.where_(pc, w.index * 32 + l as u32, self.ctaid),
            if sp == Sp::Shared { format!(" (shared offset {addr})") } else { String::new() }
        );
        ctx.report(ReportKind::Memcheck, true, msg);
    }

    #[cold]
    fn uninit(&self, ctx: &Ctx, w: &Warp, pc: u32, l: usize, addr: u64, size: u32) {
        let base = w.cache.base;
        {
            let mut s = ctx.sink.lock().unwrap();
            if !s.init_seen.insert(base) {
                return;
            }
        }
        let msg = format!(
            "Initcheck: uninitialized __global__ memory read of size {size} bytes {}: address {addr:#x}; {}",
            ctx.where_(pc, w.index * 32 + l as u32, self.ctaid),
            ctx.view.describe(addr)
        );
        ctx.report(ReportKind::Initcheck, false, msg);
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn race(&mut self, ctx: &Ctx, pc: u32, tid32: u32, _l: usize, off: usize, size: usize, acc: Acc) {
        let e = self.epoch;
        let tid = tid32 as u16;
        let sh = &mut self.race;
        let we = &sh.w_epoch[off..off + size];
        let wt = &sh.w_tid[off..off + size];
        let re = &mut sh.r_epoch[off..off + size];
        let rt = &mut sh.r_tid[off..off + size];
        match acc {
            Acc::Read => {
                // Another thread's read of exactly these bytes was the last access and saw no write of this
                // epoch (a broadcast): nothing to check, the bytes now have several readers.
                if sh.last_read.is_some_and(|(o, n, t)| o == off && n == size && t != tid) {
                    rt.fill(MANY);
                    return;
                }
                // A write by another thread in this epoch (checked before the read state changes; reads do not
                // change the write state, so the report can look it up afterwards).
                let mut hazard = false;
                let mut written = false;
                for i in 0..size {
                    written |= we[i] == e;
                    hazard |= (we[i] == e) & (wt[i] & !ATOMIC_BIT != tid);
                    let keep = (re[i] != e) | (rt[i] == tid);
                    rt[i] = if keep { tid } else { MANY };
                    re[i] = e;
                }
                sh.last_read = if written { None } else { Some((off, size, tid)) };
                if hazard {
                    let i = (0..size).find(|&i| we[i] == e && wt[i] & !ATOMIC_BIT != tid).unwrap_or(0);
                    let other = wt[i] & !ATOMIC_BIT;
                    self.race_report(ctx, pc, tid32, "read-after-write", other, off + i, size, acc);
                }
            }
            Acc::Write | Acc::Atomic => {
                let atomic = acc == Acc::Atomic;
                let mut hazard = false;
                for i in 0..size {
                    let waw = (we[i] == e) & (wt[i] & !ATOMIC_BIT != tid) & !(atomic & (wt[i] & ATOMIC_BIT != 0));
                    let war = (re[i] == e) & (rt[i] != tid);
                    hazard |= waw | war;
                }
                let mut found = None;
                if hazard {
                    for i in 0..size {
                        if we[i] == e && wt[i] & !ATOMIC_BIT != tid && !(atomic && wt[i] & ATOMIC_BIT != 0) {
                            found = Some(("write-after-write", wt[i] & !ATOMIC_BIT, off + i));
                            break;
                        } else if re[i] == e && rt[i] != tid {
                            found = Some(("write-after-read", rt[i], off + i));
                            break;
                        }
                    }
                }
                sh.last_read = None;
                let me = if atomic { tid | ATOMIC_BIT } else { tid };
                sh.w_epoch[off..off + size].fill(e);
                sh.w_tid[off..off + size].fill(me);
                if let Some((kind, other, at)) = found {
                    self.race_report(ctx, pc, tid32, kind, other, at, size, acc);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn race_report(&self, ctx: &Ctx, pc: u32, tid: u32, kind: &str, other: u16, at: usize, size: usize, acc: Acc) {
        {
            let mut s = ctx.sink.lock().unwrap();
            if !s.race_seen.insert(pc) {
                return;
            }
        }
        let other = if other == MANY {
            "several other threads".to_string()
        } else {
            let t = ctx.thread_xyz(other as u32);
            format!("thread ({},{},{})", t[0], t[1], t[2])
        };
        let a = if acc == Acc::Read { "read" } else { "write" };
        let msg = format!(
            "Racecheck: {kind} hazard on __shared__ memory: {a} of size {size} bytes {} conflicts with {other} with \
             no barrier between them: shared offset {at} (address {:#x})",
            ctx.where_(pc, tid, self.ctaid),
            GENERIC_SHARED_BASE + at as u64
        );
        ctx.report(ReportKind::Racecheck, false, msg);
    }

    /// Bank conflicts of one warp-wide shared access of `size` bytes per lane at `addrs[l]` for lanes `m`: as the
    /// hardware does, 8-byte accesses are served per half warp and 16-byte ones per quarter warp; in each phase the
    /// extra wavefronts are the most distinct 4-byte words any of the 32 banks holds, minus one.
    fn bank_conflicts(&mut self, addrs: &[u64; WARP], m: u32, size: u32) {
        let size = size.clamp(1, 16) as u64;
        let per_phase = if size <= 4 { 32 } else { 128 / size as u32 };
        let phase_mask = if per_phase == 32 { u32::MAX } else { (1u32 << per_phase) - 1 };
        let mut extra = 0u64;
        for ph in 0..32 / per_phase {
            let pm = m & (phase_mask << (ph * per_phase));
            if pm == 0 {
                continue;
            }
            // Common case: every word of the phase lies within 32 consecutive words, so no bank holds two
            // different words (broadcasts and contiguous runs).
            let (mut lo, mut hi) = (u64::MAX, 0u64);
            for l in lanes(pm) {
                lo = lo.min(addrs[l] / 4);
                hi = hi.max((addrs[l] + size - 1) / 4);
            }
            if hi - lo < 32 {
                continue;
            }
            let mut words = [0u64; 32];
            let mut n = 0;
            for l in lanes(pm) {
                for wd in addrs[l] / 4..=(addrs[l] + size - 1) / 4 {
                    if n < 32 {
                        words[n] = wd;
                        n += 1;
                    }
                }
            }
            let mut first = [u64::MAX; 32];
            let mut count = [0u32; 32];
            for i in 0..n {
                let wd = words[i];
                let b = (wd % 32) as usize;
                if first[b] == u64::MAX {
                    first[b] = wd;
                    count[b] = 1;
                } else if first[b] != wd && !words[..i].contains(&wd) {
                    count[b] += 1;
                }
            }
            extra += (*count.iter().max().unwrap()).saturating_sub(1) as u64;
        }
        self.stats.shared_bank_conflicts += extra;
    }
}

fn set_pc(w: &mut Warp, m: u32, pc: u32) {
    for l in lanes(m) {
        w.pc[l] = pc;
    }
}

fn symbol_value(ctx: &Ctx, s: SymbolRef) -> u64 {
    match s {
        SymbolRef::Global(i) => ctx.globals.get(i as usize).copied().unwrap_or(0),
        SymbolRef::Shared(o) | SymbolRef::Local(o) | SymbolRef::Param(o) => o as u64,
    }
}

/// A generic address -> (space, address in that space).
#[inline]
fn generic(v: u64) -> (Sp, u64) {
    if v.wrapping_sub(GENERIC_SHARED_BASE) < GENERIC_WINDOW {
        (Sp::Shared, v - GENERIC_SHARED_BASE)
    } else if v.wrapping_sub(GENERIC_LOCAL_BASE) < GENERIC_WINDOW {
        (Sp::Local, v - GENERIC_LOCAL_BASE)
    } else {
        (Sp::Global, v)
    }
}

/// Whether the `n` init-shadow bytes at `p` are all 1 (written).
#[inline(always)]
fn all_set(p: *const u8, n: u32) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // SAFETY: the caller checked that n bytes at p are readable.
    unsafe {
        match n {
            1 => *p != 0,
            2 => (p as *const u16).read_unaligned() == ONES as u16,
            4 => (p as *const u32).read_unaligned() == ONES as u32,
            8 => (p as *const u64).read_unaligned() == ONES,
            16 => (p as *const u64).read_unaligned() == ONES && (p.add(8) as *const u64).read_unaligned() == ONES,
            _ => !std::slice::from_raw_parts(p, n as usize).contains(&0),
        }
    }
}

/// Set the `n` init-shadow bytes at `p` to 1.
#[inline(always)]
fn set_all(p: *mut u8, n: u32) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // SAFETY: the caller checked that n bytes at p are writable.
    unsafe {
        match n {
            1 => *p = 1,
            2 => (p as *mut u16).write_unaligned(ONES as u16),
            4 => (p as *mut u32).write_unaligned(ONES as u32),
            8 => (p as *mut u64).write_unaligned(ONES),
            _ => std::ptr::write_bytes(p, 1, n as usize),
        }
    }
}

#[inline]
fn read_le(p: *const u8, n: u32) -> u64 {
    // SAFETY: the caller checked that n bytes at p are readable.
    unsafe {
        match n {
            1 => *p as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

#[inline]
fn write_le(p: *mut u8, n: u32, v: u64) {
    // SAFETY: the caller checked that n bytes at p are writable.
    unsafe {
        match n {
            1 => *p = v as u8,
            2 => (p as *mut u16).write_unaligned(v as u16),
            4 => (p as *mut u32).write_unaligned(v as u32),
            _ => (p as *mut u64).write_unaligned(v),
        }
    }
}

/// Value of a loaded element as a register holds it (s8/s16 sign-extended to 32 bits).
#[inline]
fn load_ext(ty: Ty, v: u64) -> u64 {
    match ty {
        Ty::S8 => (v as u8 as i8 as i32 as u32) as u64,
        Ty::S16 => (v as u16 as i16 as i32 as u32) as u64,
        _ => v,
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let s = ((h >> 15) as u32) << 31;
    let e = ((h >> 10) & 0x1f) as u32;
    let m = (h & 0x3ff) as u32;
    let bits = if e == 0 {
        if m == 0 {
            s
        } else {
            // subnormal: m * 2^-24
            let f = m as f32 * (1.0 / 16_777_216.0);
            return if s != 0 { -f } else { f };
        }
    } else if e == 31 {
        s | 0x7f80_0000 | (m << 13)
    } else {
        s | ((e + 112) << 23) | (m << 13)
    };
    f32::from_bits(bits)
}

fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let s = ((x >> 16) & 0x8000) as u16;
    let a = f.abs();
    if a.is_nan() {
        return s | 0x7e00;
    }
    if a >= 65520.0 {
        return s | 0x7c00;
    }
    if a < 6.103_515_6e-5 {
        // subnormal: round a / 2^-24 to nearest even
        let q = (a as f64) * 16_777_216.0;
        let r = q.round_ties_even();
        return s | r as u16;
    }
    let e = ((a.to_bits() >> 23) as i32) - 127;
    let m = a.to_bits() & 0x7f_ffff;
    let mut h = (((e + 15) as u32) << 10) | (m >> 13);
    let rest = m & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    s | h as u16
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn f32_to_bf16(f: f32) -> u16 {
    let x = f.to_bits();
    if f.is_nan() {
        return ((x >> 16) | 0x40) as u16;
    }
    let r = x + 0x7fff + ((x >> 16) & 1);
    (r >> 16) as u16
}

/// New value of an atomic location: `op` on `old` with operands `a` (and `b` for cas).
fn atom_apply(op: AtomOp, ty: Ty, old: u64, a: u64, b: u64) -> u64 {
    let bytes = ty.bytes();
    let mask = if bytes >= 8 { u64::MAX } else { (1u64 << (bytes * 8)) - 1 };
    let r = match op {
        AtomOp::And => old & a,
        AtomOp::Or => old | a,
        AtomOp::Xor => old ^ a,
        AtomOp::Exch => a,
        AtomOp::Cas => {
            if old & mask == a & mask {
                b
            } else {
                old
            }
        }
        AtomOp::Inc => {
            let (o, a) = (old & mask, a & mask);
            if o >= a {
                0
            } else {
                o + 1
            }
        }
        AtomOp::Dec => {
            let (o, a) = (old & mask, a & mask);
            if o == 0 || o > a {
                a
            } else {
                o - 1
            }
        }
        AtomOp::Add => match ty {
            Ty::F32 => (f32::from_bits(old as u32) + f32::from_bits(a as u32)).to_bits() as u64,
            Ty::F64 => (f64::from_bits(old) + f64::from_bits(a)).to_bits(),
            Ty::F16 => f32_to_f16(f16_to_f32(old as u16) + f16_to_f32(a as u16)) as u64,
            Ty::BF16 => f32_to_bf16(bf16_to_f32(old as u16) + bf16_to_f32(a as u16)) as u64,
            Ty::F16x2 => {
                let lo = f32_to_f16(f16_to_f32(old as u16) + f16_to_f32(a as u16)) as u64;
                let hi = f32_to_f16(f16_to_f32((old >> 16) as u16) + f16_to_f32((a >> 16) as u16)) as u64;
                lo | hi << 16
            }
            Ty::BF16x2 => {
                let lo = f32_to_bf16(bf16_to_f32(old as u16) + bf16_to_f32(a as u16)) as u64;
                let hi = f32_to_bf16(bf16_to_f32((old >> 16) as u16) + bf16_to_f32((a >> 16) as u16)) as u64;
                lo | hi << 16
            }
            _ => old.wrapping_add(a),
        },
        AtomOp::Min | AtomOp::Max => {
            let less = match ty {
                Ty::S32 => (a as u32 as i32) < (old as u32 as i32),
                Ty::S64 => (a as i64) < (old as i64),
                Ty::F32 => f32::from_bits(a as u32) < f32::from_bits(old as u32),
                Ty::F64 => f64::from_bits(a) < f64::from_bits(old),
                _ => (a & mask) < (old & mask),
            };
            let take_a = if op == AtomOp::Min { less } else { !less && a & mask != old & mask };
            if take_a {
                a
            } else {
                old
            }
        }
    };
    r & mask
}

/// Atomically apply `op` at host pointer `p` (aligned to the width); returns the old value.
fn atomic_rmw(p: *mut u8, op: AtomOp, ty: Ty, a: u64, b: u64) -> u64 {
    match ty.bytes() {
        8 => {
            // SAFETY: p is 8-byte aligned and inside a live allocation (checked by the caller).
            let at = unsafe { AtomicU64::from_ptr(p as *mut u64) };
            let mut cur = at.load(Ordering::Relaxed);
            loop {
                let new = atom_apply(op, ty, cur, a, b);
                match at.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return cur,
                    Err(c) => cur = c,
                }
            }
        }
        4 => {
            // SAFETY: p is 4-byte aligned and inside a live allocation (checked by the caller).
            let at = unsafe { AtomicU32::from_ptr(p as *mut u32) };
            let mut cur = at.load(Ordering::Relaxed);
            loop {
                let new = atom_apply(op, ty, cur as u64, a, b) as u32;
                match at.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return cur as u64,
                    Err(c) => cur = c,
                }
            }
        }
        _ => {
            // 16-bit: a CAS on the aligned 32-bit word holding it.
            let word = (p as usize & !3) as *mut u32;
            let shift = ((p as usize & 2) * 8) as u32;
            // SAFETY: the aligned word containing a 2-byte-aligned halfword is inside the same 256-byte-aligned
            // allocation granule (allocations and shared/local buffers are at least 4-byte aligned).
            let at = unsafe { AtomicU32::from_ptr(word) };
            let mut cur = at.load(Ordering::Relaxed);
            loop {
                let old = ((cur >> shift) & 0xffff) as u64;
                let new = atom_apply(op, ty, old, a, b) as u32;
                let nw = (cur & !(0xffff << shift)) | (new << shift);
                match at.compare_exchange_weak(cur, nw, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return old,
                    Err(c) => cur = c,
                }
            }
        }
    }
}

/// Result of trying a warp-synchronous instruction.
enum Sync {
    /// All member lanes are here: run it for `lanes`.
    Go(u32),
    /// The caller must return this flow.
    Wait(Flow),
}

impl Cta {
    /// Run one instruction for the active lanes `active` (of which `exec` pass the guard).
    #[inline]
    fn step(&mut self, ctx: &Ctx, w: &mut Warp, pc: u32, inst: &Inst, active: u32, exec: u32) -> Flow {
        match &inst.op {
            Op::Alu { op, dst, src } => {
                if exec == 0 {
                    return Flow::Next;
                }
                // Register sources are read in place (a lane reads its sources before writing its destination,
                // so a destination that is also a source is fine); a zero immediate (also every unused operand)
                // reads a shared row of zeros; others are expanded into scratch arrays (left uninitialised
                // otherwise: 768 bytes to clear on every instruction).
                static ZEROS: [u64; WARP] = [0; WARP];
                let mut scratch = [std::mem::MaybeUninit::<[u64; WARP]>::uninit(); 3];
                let mut filled = [std::ptr::null::<u64>(); 3];
                for (i, s) in src.iter().enumerate().take(3) {
                    filled[i] = match *s {
                        Src::Reg(_) => continue,
                        Src::Imm(0) => ZEROS.as_ptr(),
                        Src::Imm(v) => scratch[i].write([v; WARP]).as_ptr(),
                        _ => {
                            let t = scratch[i].write([0; WARP]);
                            self.src(ctx, w, s, exec, t);
                            t.as_ptr()
                        }
                    };
                }
                let nregs = w.regs.len();
                // All register pointers derive from one raw base pointer (a destination may alias a source).
                let base = w.regs.as_mut_ptr() as *mut u64;
                let row = |i: usize| -> *const u64 {
                    match src[i] {
                        Src::Reg(r) => {
                            assert!((r as usize) < nregs);
                            // SAFETY: r < nregs rows of 32 u64.
                            unsafe { base.add(r as usize * WARP) as *const u64 }
                        }
                        _ => filled[i],
                    }
                };
                let pa = row(0);
                let pb = row(1);
                let pc_ = row(2);
                assert!((*dst as usize) < nregs);
                // SAFETY: dst < nregs.
                let d = unsafe { base.add(*dst as usize * WARP) };
                // SAFETY: every pointer addresses 32 u64 (a register row or a scratch array) that live across the
                // call; a destination row is either the same row as a source or disjoint from it.
                unsafe { alu::eval_lanes(op, d, pa, pb, pc_, exec) };
                self.stats.simt_flops += alu::simt_flops(op) as u64 * exec.count_ones() as u64;
                Flow::Next
            }
            Op::Pack { dst, src, elem_bits } => {
                for l in lanes(exec) {
                    let mut v = 0u64;
                    for (i, s) in src.iter().enumerate() {
                        let sh = i as u32 * elem_bits;
                        if sh < 64 {
                            v |= self.src1(ctx, w, s, l) << sh;
                        }
                    }
                    w.regs[*dst as usize][l] = v;
                }
                Flow::Next
            }
            Op::Unpack { dst, src, elem_bits } => {
                let mask = if *elem_bits >= 64 { u64::MAX } else { (1u64 << elem_bits) - 1 };
                for l in lanes(exec) {
                    let v = self.src1(ctx, w, src, l);
                    for (i, d) in dst.iter().enumerate() {
                        if let Some(d) = d {
                            let sh = i as u32 * elem_bits;
                            w.regs[*d as usize][l] = if sh < 64 { (v >> sh) & mask } else { 0 };
                        }
                    }
                }
                Flow::Next
            }
            Op::Ld { space, ty, dst, addr, .. } => {
                let n = ty.bytes();
                let width = n * dst.len() as u32;
                let mut addrs = [0u64; WARP];
                let mut ptrs = [std::ptr::null::<u8>(); WARP];
                let mut ok = 0u32;
                let mut shared = false;
                for l in lanes(exec) {
                    let (sp, ad) = self.addr(ctx, w, *space, addr, l);
                    shared |= sp == Sp::Shared;
                    addrs[l] = ad;
                    let Some(p) = self.ptr(ctx, w, pc, l, sp, ad, width, width.min(16), Acc::Read) else {
                        if ctx.stop.load(Ordering::Relaxed) {
                            return Flow::Stop;
                        }
                        for d in dst.iter().flatten() {
                            w.regs[*d as usize][l] = 0;
                        }
                        continue;
                    };
                    ptrs[l] = p;
                    ok |= 1 << l;
                }
                // The loads, one destination register at a time with the width and extension decided once (the
                // checks above wrote nothing, so the order of the reads does not matter).
                for (i, d) in dst.iter().enumerate() {
                    let Some(d) = d else { continue };
                    let row = &mut w.regs[*d as usize];
                    let off = (i as u32 * n) as usize;
                    // SAFETY: every lane in `ok` has `width` valid bytes at ptrs[l].
                    unsafe {
                        match (n, ty) {
                            (4, _) => {
                                for l in lanes(ok) {
                                    row[l] = (ptrs[l].add(off) as *const u32).read_unaligned() as u64;
                                }
                            }
                            (8, _) => {
                                for l in lanes(ok) {
                                    row[l] = (ptrs[l].add(off) as *const u64).read_unaligned();
                                }
                            }
                            _ => {
                                for l in lanes(ok) {
                                    row[l] = load_ext(*ty, read_le(ptrs[l].add(off), n));
                                }
                            }
                        }
                    }
                }
                if shared {
                    self.bank_conflicts(&addrs, exec, width);
                }
                Flow::Next
            }
            Op::St { space, ty, src, addr } => {
                let n = ty.bytes();
                let width = n * src.len() as u32;
                let mut addrs = [0u64; WARP];
                let mut shared = false;
                for l in lanes(exec) {
                    let (sp, ad) = self.addr(ctx, w, *space, addr, l);
                    shared |= sp == Sp::Shared;
                    addrs[l] = ad;
                    let Some(p) = self.ptr(ctx, w, pc, l, sp, ad, width, width.min(16), Acc::Write) else {
                        if ctx.stop.load(Ordering::Relaxed) {
                            return Flow::Stop;
                        }
                        continue;
                    };
                    for (i, s) in src.iter().enumerate() {
                        let v = match *s {
                            Src::Reg(r) => w.regs[r as usize][l],
                            _ => self.src1(ctx, w, s, l),
                        };
                        // SAFETY: p points at `width` valid bytes.
                        let q = unsafe { p.add((i as u32 * n) as usize) };
                        match n {
                            // SAFETY: as above.
                            4 => unsafe { (q as *mut u32).write_unaligned(v as u32) },
                            _ => write_le(q, n, v),
                        }
                    }
                }
                if shared {
                    self.bank_conflicts(&addrs, exec, width);
                }
                Flow::Next
            }
            Op::Atom { space, op, ty, dst, addr, src } => {
                let n = ty.bytes();
                for l in lanes(exec) {
                    let (sp, ad) = self.addr(ctx, w, *space, addr, l);
                    let x = self.src1(ctx, w, &src[0], l);
                    let y = self.src1(ctx, w, &src[1], l);
                    let Some(p) = self.ptr(ctx, w, pc, l, sp, ad, n, n, Acc::Atomic) else {
                        if ctx.stop.load(Ordering::Relaxed) {
                            return Flow::Stop;
                        }
                        continue;
                    };
                    let old = atomic_rmw(p, *op, *ty, x, y);
                    if let Some(d) = dst {
                        w.regs[*d as usize][l] = load_ext(*ty, old);
                    }
                }
                Flow::Next
            }
            Op::Cvta { to_generic, space, dst, src } => {
                let mut a = [0u64; WARP];
                self.src(ctx, w, src, exec, &mut a);
                let base = match space {
                    Space::Shared => GENERIC_SHARED_BASE,
                    Space::Local => GENERIC_LOCAL_BASE,
                    _ => 0,
                };
                for l in lanes(exec) {
                    w.regs[*dst as usize][l] = if *to_generic {
                        a[l].wrapping_add(base)
                    } else if base != 0 && a[l].wrapping_sub(base) < GENERIC_WINDOW {
                        a[l] - base
                    } else {
                        a[l]
                    };
                }
                Flow::Next
            }
            Op::Bra { target, .. } => Flow::Jump(exec, *target),
            Op::Exit => Flow::Exit(exec),
            Op::Bar { id, count, arrive_only } => {
                if exec == 0 {
                    return Flow::Next;
                }
                let l0 = exec.trailing_zeros() as usize;
                let id = (self.src1(ctx, w, id, l0) & 15) as usize;
                let cnt = count.as_ref().map(|c| self.src1(ctx, w, c, l0) as u32).unwrap_or(0);
                if cnt > 0 {
                    self.bar_expect[id] = cnt;
                }
                if *arrive_only {
                    self.bar_arrived[id] += exec.count_ones();
                    return Flow::Next;
                }
                for l in lanes(exec) {
                    w.bar_id[l] = id as u8;
                    w.pc[l] = pc;
                }
                w.at_bar |= exec;
                w.run &= !exec;
                Flow::Block(exec)
            }
            Op::Fence | Op::Nop | Op::CpAsyncCommit | Op::CpAsyncWait { .. } => Flow::Next,
            Op::WarpSync { mask } => match self.sync(ctx, w, pc, active, exec, Some(mask)) {
                Sync::Go(_) => Flow::Next,
                Sync::Wait(f) => f,
            },
            Op::Shfl { mode, dst, pred, a: sa, b: sb, c: sc, mask } => {
                let mut a = [0u64; WARP];
                let mut b = [0u64; WARP];
                let mut c = [0u64; WARP];
                let m = match self.sync(ctx, w, pc, active, exec, Some(mask)) {
                    Sync::Go(m) => m,
                    Sync::Wait(f) => return f,
                };
                self.src(ctx, w, sa, u32::MAX, &mut a);
                self.src(ctx, w, sb, m, &mut b);
                self.src(ctx, w, sc, m, &mut c);
                let mut out = [0u64; WARP];
                let mut pv = [false; WARP];
                for l in lanes(m) {
                    let lane = l as i32;
                    let bval = (b[l] & 31) as i32;
                    let cval = (c[l] & 31) as i32;
                    let seg = ((c[l] >> 8) & 31) as i32;
                    let max_lane = (lane & seg) | (cval & !seg);
                    let min_lane = lane & seg;
                    let (j, ok) = match mode {
                        ShflMode::Up => {
                            let j = lane - bval;
                            (j, j >= max_lane)
                        }
                        ShflMode::Down => {
                            let j = lane + bval;
                            (j, j <= max_lane)
                        }
                        ShflMode::Bfly => {
                            let j = lane ^ bval;
                            (j, j <= max_lane)
                        }
                        ShflMode::Idx => {
                            let j = min_lane | (bval & !seg);
                            (j, j <= max_lane)
                        }
                    };
                    let j = if ok { j as usize } else { l };
                    out[l] = a[j] & 0xffff_ffff;
                    pv[l] = ok;
                }
                for l in lanes(m) {
                    w.regs[*dst as usize][l] = out[l];
                    if let Some(p) = pred {
                        w.regs[*p as usize][l] = pv[l] as u64;
                    }
                }
                Flow::Next
            }
            Op::Vote { mode, dst, src, negate, mask } => {
                let mut a = [0u64; WARP];
                let mut b = [0u64; WARP];
                let m = match self.sync(ctx, w, pc, active, exec, Some(mask)) {
                    Sync::Go(m) => m,
                    Sync::Wait(f) => return f,
                };
                self.src(ctx, w, src, m, &mut a);
                self.src(ctx, w, mask, m, &mut b);
                let mut ballot = 0u32;
                for l in lanes(m) {
                    if (a[l] != 0) != *negate {
                        ballot |= 1 << l;
                    }
                }
                for l in lanes(m) {
                    let mm = b[l] as u32 & m;
                    let bl = ballot & mm;
                    w.regs[*dst as usize][l] = match mode {
                        VoteMode::All => (bl == mm) as u64,
                        VoteMode::Any => (bl != 0) as u64,
                        VoteMode::Uni => (bl == 0 || bl == mm) as u64,
                        VoteMode::Ballot => bl as u64,
                    };
                }
                Flow::Next
            }
            Op::Redux { op, ty, dst, src, mask } => {
                let mut a = [0u64; WARP];
                let mut b = [0u64; WARP];
                let m = match self.sync(ctx, w, pc, active, exec, Some(mask)) {
                    Sync::Go(m) => m,
                    Sync::Wait(f) => return f,
                };
                self.src(ctx, w, src, m, &mut a);
                self.src(ctx, w, mask, m, &mut b);
                let signed = ty.is_signed();
                for l in lanes(m) {
                    let mm = b[l] as u32 & m;
                    let mut acc: Option<u32> = None;
                    for j in lanes(mm) {
                        let v = a[j] as u32;
                        acc = Some(match acc {
                            None => v,
                            Some(x) => match op {
                                ReduxOp::Add => x.wrapping_add(v),
                                ReduxOp::And => x & v,
                                ReduxOp::Or => x | v,
                                ReduxOp::Xor => x ^ v,
                                ReduxOp::Min if signed => (x as i32).min(v as i32) as u32,
                                ReduxOp::Max if signed => (x as i32).max(v as i32) as u32,
                                ReduxOp::Min => x.min(v),
                                ReduxOp::Max => x.max(v),
                            },
                        });
                    }
                    b[l] = acc.unwrap_or(0) as u64;
                }
                for l in lanes(m) {
                    w.regs[*dst as usize][l] = b[l];
                }
                Flow::Next
            }
            Op::Mma { shape, d_ty, a_ty, b_ty: _, c_ty, d, a: fa, b: fb, c: fc } => {
                if let Sync::Wait(f) = self.sync(ctx, w, pc, active, exec, None) {
                    return f;
                }
                if *d_ty != Ty::F32 || *c_ty != Ty::F32 {
                    let msg = format!(
                        "Error: unsupported mma accumulator type {d_ty:?} {}",
                        ctx.where_(pc, w.index * 32, self.ctaid)
                    );
                    ctx.report(ReportKind::Error, true, msg);
                    return Flow::Stop;
                }
                self.mma(ctx, w, *shape, *a_ty, d, fa, fb, fc);
                Flow::Next
            }
            Op::Ldmatrix { trans, dst, addr, space } => {
                if let Sync::Wait(f) = self.sync(ctx, w, pc, active, exec, None) {
                    return f;
                }
                let nmat = dst.len().min(4);
                let mut mats = [[[0u16; 8]; 8]; 4];
                for (mi, mat) in mats.iter_mut().enumerate().take(nmat) {
                    let mut addrs = [0u64; WARP];
                    let mut rows = 0u32;
                    for (r, row) in mat.iter_mut().enumerate() {
                        let l = mi * 8 + r;
                        let (sp, ad) = self.addr(ctx, w, *space, addr, l);
                        addrs[l] = ad;
                        rows |= 1 << l;
                        let Some(p) = self.ptr(ctx, w, pc, l, sp, ad, 16, 16, Acc::Read) else {
                            return Flow::Stop;
                        };
                        for (k, e) in row.iter_mut().enumerate() {
                            // SAFETY: 16 valid bytes at p.
                            *e = read_le(unsafe { p.add(2 * k) }, 2) as u16;
                        }
                    }
                    self.bank_conflicts(&addrs, rows, 16);
                }
                for (mi, d) in dst.iter().enumerate().take(4) {
                    let mat = &mats[mi];
                    for l in 0..WARP {
                        let (r, c0) = (l / 4, (l % 4) * 2);
                        let (e0, e1) = if *trans { (mat[c0][r], mat[c0 + 1][r]) } else { (mat[r][c0], mat[r][c0 + 1]) };
                        w.regs[*d as usize][l] = e0 as u64 | (e1 as u64) << 16;
                    }
                }
                Flow::Next
            }
            Op::CpAsync { dst, src, cp_size, src_size } => {
                for l in lanes(exec) {
                    let n = *cp_size;
                    let sn = src_size.as_ref().map(|s| self.src1(ctx, w, s, l) as u32).unwrap_or(n).min(n);
                    let (ssp, sad) = self.addr(ctx, w, Space::Global, src, l);
                    let (dsp, dad) = self.addr(ctx, w, Space::Shared, dst, l);
                    let mut buf = [0u8; 16];
                    if sn > 0 {
                        let Some(p) = self.ptr(ctx, w, pc, l, ssp, sad, sn, n.min(16), Acc::Read) else {
                            if ctx.stop.load(Ordering::Relaxed) {
                                return Flow::Stop;
                            }
                            continue;
                        };
                        // SAFETY: sn valid bytes at p.
                        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), sn.min(16) as usize) };
                    }
                    let Some(q) = self.ptr(ctx, w, pc, l, dsp, dad, n, n.min(16), Acc::Write) else {
                        if ctx.stop.load(Ordering::Relaxed) {
                            return Flow::Stop;
                        }
                        continue;
                    };
                    // SAFETY: n valid bytes at q.
                    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), q, n.min(16) as usize) };
                }
                Flow::Next
            }
        }
    }
}

impl Cta {
    /// Warp-synchronous arrival: lanes `exec` (of `active`) reach the instruction at `pc` whose member mask is
    /// `mask` (None: the whole warp, for `.aligned` mma/ldmatrix). Runs it when every member lane is here.
    fn sync(&mut self, ctx: &Ctx, w: &mut Warp, pc: u32, active: u32, exec: u32, mask: Option<&Src>) -> Sync {
        let _ = active;
        if exec == 0 {
            return Sync::Wait(Flow::Next);
        }
        let member = match mask {
            Some(s) => {
                let mut m = 0u32;
                for l in lanes(exec) {
                    m |= self.src1(ctx, w, s, l) as u32;
                }
                m
            }
            None => w.valid,
        };
        let mut here = 0u32;
        for l in lanes(w.at_sync) {
            if w.pc[l] == pc {
                here |= 1 << l;
            }
        }
        let arrived = exec | here;
        let name = op_name(&ctx.kernel.insts[pc as usize].op);
        if member & !w.valid != 0 {
            let msg = format!(
                "Error: {name} member mask {member:#010x} names lanes that do not exist (the warp has lanes {:#010x}) {}",
                w.valid,
                ctx.where_(pc, w.index * 32 + exec.trailing_zeros(), self.ctaid)
            );
            ctx.report(ReportKind::Error, true, msg);
            return Sync::Wait(Flow::Stop);
        }
        if member & !arrived == 0 {
            w.at_sync &= !here;
            w.run |= here;
            set_pc(w, here, pc + 1);
            return Sync::Go(arrived);
        }
        if member & w.exited & !arrived != 0 {
            let msg = format!(
                "Error: {name} member mask {member:#010x} includes exited lanes {:#010x} {}",
                member & w.exited,
                ctx.where_(pc, w.index * 32 + exec.trailing_zeros(), self.ctaid)
            );
            ctx.report(ReportKind::Error, true, msg);
            return Sync::Wait(Flow::Stop);
        }
        w.at_sync |= exec;
        w.run &= !exec;
        set_pc(w, exec, pc);
        Sync::Wait(Flow::Block(exec))
    }

    #[allow(clippy::too_many_arguments)]
    fn mma(
        &mut self,
        ctx: &Ctx,
        w: &mut Warp,
        shape: MmaShape,
        a_ty: Ty,
        d: &[u32],
        fa: &[Src],
        fb: &[Src],
        fc: &[Src],
    ) {
        let k = match shape {
            MmaShape::M16N8K16 => 16,
            MmaShape::M16N8K8 => 8,
            MmaShape::M16N8K4 => 4,
        };
        let mut am = [[0f64; 16]; 16];
        let mut bm = [[0f64; 8]; 16];
        let mut cm = [[0f64; 8]; 16];
        let half = |bits: u64| -> f64 {
            if a_ty == Ty::BF16 || a_ty == Ty::BF16x2 {
                bf16_to_f32(bits as u16) as f64
            } else {
                f16_to_f32(bits as u16) as f64
            }
        };
        for l in 0..WARP {
            let (g, t) = (l / 4, l % 4);
            if matches!(a_ty, Ty::Tf32 | Ty::F32) {
                for (i, s) in fa.iter().enumerate().take(if k == 8 { 4 } else { 2 }) {
                    let v = f32::from_bits(self.src1(ctx, w, s, l) as u32 & 0xffff_e000) as f64;
                    let (r, c) = if k == 8 { (g + 8 * (i & 1), t + 4 * (i >> 1)) } else { (g + 8 * i, t) };
                    am[r][c] = v;
                }
                for (i, s) in fb.iter().enumerate().take(if k == 8 { 2 } else { 1 }) {
                    let v = f32::from_bits(self.src1(ctx, w, s, l) as u32 & 0xffff_e000) as f64;
                    bm[t + 4 * i][g] = v;
                }
            } else {
                for (ri, s) in fa.iter().enumerate().take(if k == 16 { 4 } else { 2 }) {
                    let bits = self.src1(ctx, w, s, l);
                    for h in 0..2 {
                        let i = ri * 2 + h;
                        let v = half(bits >> (16 * h));
                        let (r, c) = if k == 16 {
                            (g + 8 * ((i >> 1) & 1), t * 2 + (i & 1) + 8 * (i >> 2))
                        } else {
                            (g + 8 * (i >> 1), t * 2 + (i & 1))
                        };
                        am[r][c] = v;
                    }
                }
                for (ri, s) in fb.iter().enumerate().take(if k == 16 { 2 } else { 1 }) {
                    let bits = self.src1(ctx, w, s, l);
                    for h in 0..2 {
                        let i = ri * 2 + h;
                        bm[t * 2 + (i & 1) + 8 * (i >> 1)][g] = half(bits >> (16 * h));
                    }
                }
            }
            for (i, s) in fc.iter().enumerate().take(4) {
                cm[g + 8 * (i >> 1)][t * 2 + (i & 1)] = f32::from_bits(self.src1(ctx, w, s, l) as u32) as f64;
            }
        }
        let mut dm = [[0f32; 8]; 16];
        for r in 0..16 {
            for n in 0..8 {
                let mut s = cm[r][n];
                for kk in 0..k {
                    s += am[r][kk] * bm[kk][n];
                }
                dm[r][n] = s as f32;
            }
        }
        for l in 0..WARP {
            let (g, t) = (l / 4, l % 4);
            for (i, r) in d.iter().enumerate().take(4) {
                w.regs[*r as usize][l] = dm[g + 8 * (i >> 1)][t * 2 + (i & 1)].to_bits() as u64;
            }
        }
        self.stats.tensor_flops += 2 * 16 * 8 * k as u64;
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Shfl { .. } => "shfl.sync",
        Op::Vote { .. } => "vote.sync",
        Op::Redux { .. } => "redux.sync",
        Op::Mma { .. } => "mma.sync",
        Op::Ldmatrix { .. } => "ldmatrix",
        Op::WarpSync { .. } => "bar.warp.sync",
        Op::Bar { .. } => "bar.sync",
        _ => "instruction",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions_round_trip_and_round_to_nearest_even() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "{h:#06x} -> {f}");
            assert_eq!(
                f32_to_bf16(bf16_to_f32(h)),
                if bf16_to_f32(h).is_nan() { f32_to_bf16(bf16_to_f32(h)) } else { h }
            );
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        // halfway between 1 and the next half (1 + 2^-10): ties to even (1.0)
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(70000.0), 0x7c00);
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
    }

    #[test]
    fn atomics_semantics() {
        assert_eq!(atom_apply(AtomOp::Inc, Ty::U32, 5, 5, 0), 0);
        assert_eq!(atom_apply(AtomOp::Inc, Ty::U32, 4, 5, 0), 5);
        assert_eq!(atom_apply(AtomOp::Dec, Ty::U32, 0, 5, 0), 5);
        assert_eq!(atom_apply(AtomOp::Dec, Ty::U32, 7, 5, 0), 5);
        assert_eq!(atom_apply(AtomOp::Dec, Ty::U32, 3, 5, 0), 2);
        assert_eq!(atom_apply(AtomOp::Max, Ty::S32, (-3i32) as u32 as u64, 2, 0), 2);
        assert_eq!(atom_apply(AtomOp::Min, Ty::S32, 2, (-3i32) as u32 as u64, 0), (-3i32) as u32 as u64);
        assert_eq!(atom_apply(AtomOp::Cas, Ty::B32, 4, 4, 9), 9);
        assert_eq!(atom_apply(AtomOp::Cas, Ty::B32, 3, 4, 9), 3);
        let mut word = [0u32; 2];
        let p = word.as_mut_ptr() as *mut u8;
        // bf16x2 add and a 16-bit f16 add in the high half of a word
        atomic_rmw(p, AtomOp::Add, Ty::BF16x2, 0x4000_3f80, 0);
        assert_eq!(word[0], 0x4000_3f80);
        let hi = unsafe { p.add(6) };
        atomic_rmw(hi, AtomOp::Add, Ty::F16, 0x3c00, 0);
        atomic_rmw(hi, AtomOp::Add, Ty::F16, 0x3c00, 0);
        assert_eq!(word[1], 0x4000_0000);
    }
}
