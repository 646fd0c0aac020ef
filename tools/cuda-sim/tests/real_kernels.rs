//! The project's own kernels (nvcc 13.0 PTX, committed copy) run end to end: results against a CPU reference, no
//! false sanitizer reports, and the speed of the interpreter in thread-instructions per second.

use cuda_sim::exec::{launch, ExecOptions, LaunchConfig, LaunchOutcome};
use cuda_sim::ir::Module;
use cuda_sim::mem::DeviceMemory;

const KERNELS: &str = include_str!("data/kernels_compute90.ptx");

fn module() -> Module {
    cuda_sim::parse::parse(KERNELS).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Clone, Copy)]
enum Arg {
    U64(u64),
    U32(u32),
    F32(f32),
}

fn run(m: &Module, name: &str, grid: [u32; 3], block: [u32; 3], args: &[Arg], mem: &DeviceMemory) -> LaunchOutcome {
    let k = m.kernel(name).unwrap();
    assert_eq!(k.params.len(), args.len(), "{name}");
    let mut p = vec![0u8; k.param_bytes as usize];
    for (par, a) in k.params.iter().zip(args) {
        let o = par.offset as usize;
        match *a {
            Arg::U64(v) => p[o..o + 8].copy_from_slice(&v.to_le_bytes()),
            Arg::U32(v) => p[o..o + 4].copy_from_slice(&v.to_le_bytes()),
            Arg::F32(v) => p[o..o + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }
    let globals: Vec<u64> = m
        .globals
        .iter()
        .map(|g| {
            let a = mem.alloc(g.size, &format!("module global {}", g.name)).unwrap();
            mem.write(a, &g.init).unwrap();
            a
        })
        .collect();
    let cfg = LaunchConfig { grid, block, dyn_shared_bytes: 0 };
    launch(m, k, &globals, &cfg, &p, mem, &ExecOptions::default())
}

/// Nanoseconds this thread has been on a CPU (Linux), to rate the interpreter on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn upload(mem: &DeviceMemory, v: &[f32], tag: &str) -> u64 {
    let a = mem.alloc(v.len() as u64 * 4, tag).unwrap();
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    mem.write(a, &b).unwrap();
    a
}

fn download(mem: &DeviceMemory, a: u64, n: usize) -> Vec<f32> {
    let mut b = vec![0u8; n * 4];
    mem.read(a, &mut b).unwrap();
    b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn gemm_batched_f32_matches_cpu_and_is_clean() {
    let m = module();
    let mem = DeviceMemory::new();
    let (mm, nn, kk) = (192usize, 160usize, 128usize);
    let a: Vec<f32> = (0..mm * kk).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
    let b: Vec<f32> = (0..kk * nn).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let da = upload(&mem, &a, "A");
    let db = upload(&mem, &b, "B");
    let dc = mem.alloc((mm * nn * 4) as u64, "C").unwrap();
    let args = [
        Arg::U64(da),
        Arg::U64(db),
        Arg::U64(dc),
        Arg::U32(mm as u32),
        Arg::U32(nn as u32),
        Arg::U32(kk as u32),
        Arg::U32(kk as u32),
        Arg::U32(nn as u32),
        Arg::U32(nn as u32),
        Arg::U32(0),
        Arg::U32(0),
        Arg::U64(0),
        Arg::U64(0),
        Arg::U64(0),
        Arg::F32(1.0),
        Arg::F32(0.0),
    ];
    let grid = [(nn as u32).div_ceil(64), (mm as u32).div_ceil(64), 1];
    let t = std::time::Instant::now();
    let o = run(&m, "gemm_batched_f32", grid, [256, 1, 1], &args, &mem);
    let dt = t.elapsed().as_secs_f64();
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    // once more on this thread alone, timed by CPU time
    let k = m.kernel("gemm_batched_f32").unwrap();
    let mut p = vec![0u8; k.param_bytes as usize];
    for (par, a) in k.params.iter().zip(&args) {
        let o = par.offset as usize;
        match *a {
            Arg::U64(v) => p[o..o + 8].copy_from_slice(&v.to_le_bytes()),
            Arg::U32(v) => p[o..o + 4].copy_from_slice(&v.to_le_bytes()),
            Arg::F32(v) => p[o..o + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }
    let cfg = LaunchConfig { grid, block: [256, 1, 1], dyn_shared_bytes: 0 };
    let opts = ExecOptions { threads: 1, ..ExecOptions::default() };
    let c0 = thread_cpu_ns();
    let o1 = launch(&m, k, &[], &cfg, &p, &mem, &opts);
    if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
        eprintln!(
            "gemm_batched_f32 on one host thread: {:.1} M thread-instructions per CPU second",
            o1.stats.thread_instructions as f64 / ((c1 - c0) as f64 * 1e-9) / 1e6
        );
    }
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    let c = download(&mem, dc, mm * nn);
    for i in 0..mm {
        for j in 0..nn {
            let want: f32 = (0..kk).map(|x| a[i * kk + x] * b[x * nn + j]).sum();
            assert!(
                (c[i * nn + j] - want).abs() <= 1e-4 * want.abs().max(1.0),
                "C[{i}][{j}] = {} want {want}",
                c[i * nn + j]
            );
        }
    }
    let s = o.stats;
    assert!(s.simt_flops >= (2 * mm * nn * kk) as u64, "{s:?}");
    assert_eq!(s.global_write_bytes, (mm * nn * 4) as u64);
    eprintln!(
        "gemm_batched_f32 {mm}x{nn}x{kk}: {s:?}; {:.1} M thread-instructions/s ({dt:.3} s)",
        s.thread_instructions as f64 / dt / 1e6
    );
}

/// nvcc's PTX for a kernel using every tensor-core-era form (mma bf16/f16/tf32, ldmatrix, cp.async, atomics,
/// vote/redux/shfl, f16/bf16 conversions) runs up to its genuine bug: `cp.async ... 16` from `x + t` is a
/// misaligned 16-byte global read (tc.cu:31), which stops the launch as on a GPU.
#[test]
fn tensor_core_forms_kernel_runs() {
    let m = cuda_sim::parse::parse(include_str!("data/tensor_core_forms.ptx")).unwrap_or_else(|e| panic!("{e}"));
    let mem = DeviceMemory::new();
    let x: Vec<f32> = (0..1024).map(|i| 0.25 + (i % 17) as f32 / 8.0).collect();
    let dx = upload(&mem, &x, "x");
    let dy = mem.alloc(4096, "y").unwrap();
    mem.write(dy, &[0u8; 4096]).unwrap();
    let du = mem.alloc(4096, "u").unwrap();
    mem.write(du, &[0u8; 4096]).unwrap();
    let dout = mem.alloc(4096, "o").unwrap();
    mem.write(dout, &[0u8; 4096]).unwrap();
    let k = m.kernel("tc").unwrap();
    let mut p = vec![0u8; k.param_bytes as usize];
    for (i, v) in [dx, dy, du, dout].iter().enumerate() {
        let o = k.params[i].offset as usize;
        p[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    let o4 = k.params[4].offset as usize;
    p[o4..o4 + 4].copy_from_slice(&16u32.to_le_bytes());
    let cfg = LaunchConfig { grid: [3, 1, 1], block: [64, 1, 1], dyn_shared_bytes: 1024 };
    let opts = ExecOptions { threads: 1, ..ExecOptions::default() };
    let o = launch(&m, k, &[], &cfg, &p, &mem, &opts);
    for r in &o.reports {
        eprintln!("{}", r.message);
    }
    use cuda_sim::exec::ReportKind;
    assert!(o.failed, "{:#?}", o.reports);
    let faults: Vec<_> = o.reports.iter().filter(|r| r.kind != ReportKind::Racecheck).collect();
    assert_eq!(faults.len(), 1, "{:#?}", o.reports);
    assert_eq!(faults[0].kind, ReportKind::Memcheck);
    assert!(
        faults[0].message.contains("misaligned") && faults[0].message.contains("tc.cu:31 "),
        "{}",
        faults[0].message
    );
    // warp 0 of block 0 ran its three mma before the fault (warps run in order on one host thread)
    assert_eq!(o.stats.tensor_flops, 2 * (2 * 16 * 8 * 16) + 2 * 16 * 8 * 8);
    // u[t] = ballot + all + reduce_add + reduce_max + shfl_up(t, 1) + shfl(t, 3) (u[0..4] also take atomics)
    let mut u = vec![0u8; 256];
    mem.read(du, &mut u).unwrap();
    for t in 4..64u32 {
        let base = t / 32 * 32;
        let sum: u32 = (base..base + 32).sum();
        let up = if t % 32 == 0 { t } else { t - 1 };
        let want = u32::MAX.wrapping_add(sum).wrapping_add(base + 31).wrapping_add(up).wrapping_add(base + 3);
        let got = u32::from_le_bytes(u[t as usize * 4..t as usize * 4 + 4].try_into().unwrap());
        assert_eq!(got, want, "u[{t}]");
    }
}

fn philox(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (c, k);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(0x9E37_79B9);
            k[1] = k[1].wrapping_add(0xBB67_AE85);
        }
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// rng_normal_f32 / rng_uniform_f32 (Philox, logf, sqrtf, sincosf with its local depot) against a CPU model.
#[test]
fn rng_kernels_match_philox_model() {
    let m = module();
    let mem = DeviceMemory::new();
    let n = 4000usize;
    let (seed, offset) = (0x1234_5678_9abc_def0u64, 77u64);
    let out = mem.alloc(n as u64 * 4, "out").unwrap();
    let args = [Arg::U64(out), Arg::U32(n as u32), Arg::U64(seed), Arg::U64(offset)];
    let blocks = (n as u32 / 4).div_ceil(128);
    let o = run(&m, "rng_uniform_f32", [blocks, 1, 1], [128, 1, 1], &args, &mem);
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    let u = download(&mem, out, n);
    let o = run(&m, "rng_normal_f32", [blocks, 1, 1], [128, 1, 1], &args, &mem);
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    let z = download(&mem, out, n);
    let unif = |x: u32| ((x >> 8) + 1) as f64 * 2f64.powi(-24);
    for b in 0..n / 4 {
        let w = philox([b as u32, 0, offset as u32, (offset >> 32) as u32], [seed as u32, (seed >> 32) as u32]);
        for j in 0..4 {
            assert_eq!(u[4 * b + j] as f64, unif(w[j]), "uniform {}", 4 * b + j);
        }
        for p in 0..2 {
            let r = (-2.0 * unif(w[2 * p]).ln()).sqrt();
            let th = std::f64::consts::TAU * unif(w[2 * p + 1]);
            let (zc, zs) = (r * th.cos(), r * th.sin());
            for (got, want) in [(z[4 * b + 2 * p], zc), (z[4 * b + 2 * p + 1], zs)] {
                assert!((got as f64 - want).abs() <= 2e-5 * want.abs().max(1.0), "normal block {b}: {got} vs {want}");
            }
        }
    }
}

/// reduce_partial_f32 + reduce_finish_f64: a barrier tree in shared memory (racecheck must stay quiet), exact sums.
#[test]
fn reduce_kernels_sum_exactly_without_reports() {
    let m = module();
    let mem = DeviceMemory::new();
    let n = 100_000usize;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.5).collect();
    let dx = upload(&mem, &x, "x");
    let parts = 37u32;
    let partial = mem.alloc(parts as u64 * 8, "partial").unwrap();
    let o = run(
        &m,
        "reduce_partial_f32",
        [parts, 1, 1],
        [256, 1, 1],
        &[Arg::U64(dx), Arg::U64(dx), Arg::U32(n as u32), Arg::U32(2), Arg::U64(partial)],
        &mem,
    );
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    let out = mem.alloc(4, "out").unwrap();
    let total = mem.alloc(8, "total").unwrap();
    let k = m.kernel("reduce_finish_f64").unwrap();
    let mut p = vec![0u8; k.param_bytes as usize];
    let put = |p: &mut Vec<u8>, i: usize, b: &[u8]| {
        let o = k.params[i].offset as usize;
        p[o..o + b.len()].copy_from_slice(b);
    };
    put(&mut p, 0, &partial.to_le_bytes());
    put(&mut p, 1, &parts.to_le_bytes());
    put(&mut p, 2, &0.5f64.to_le_bytes());
    put(&mut p, 3, &out.to_le_bytes());
    put(&mut p, 4, &total.to_le_bytes());
    let cfg = LaunchConfig { grid: [1, 1, 1], block: [256, 1, 1], dyn_shared_bytes: 0 };
    let o = launch(&m, k, &[], &cfg, &p, &mem, &ExecOptions::default());
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
    let want: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let mut b = [0u8; 8];
    mem.read(total, &mut b).unwrap();
    assert_eq!(f64::from_le_bytes(b), want);
    assert_eq!(download(&mem, out, 1)[0], (want * 0.5) as f32);
}

/// Every project kernel runs on made-up arguments (pointers to 1 MiB of 0.5f, integers 8, scalars 0.5, zeroed
/// structs) without an internal simulator error or a deadlock; whatever the sanitizer says about the made-up
/// arguments is allowed.
#[test]
fn every_project_kernel_runs_on_made_up_arguments() {
    let m = module();
    let mem = DeviceMemory::new();
    let mut bufs = vec![];
    let half: Vec<u8> = (0..(1 << 18)).flat_map(|_| 0.5f32.to_le_bytes()).collect();
    for i in 0..8 {
        let a = mem.alloc(1 << 20, &format!("arg{i}")).unwrap();
        mem.write(a, &half).unwrap();
        bufs.push(a);
    }
    let globals: Vec<u64> = m
        .globals
        .iter()
        .map(|g| {
            let a = mem.alloc(g.size, &g.name).unwrap();
            mem.write(a, &g.init).unwrap();
            a
        })
        .collect();
    let mut total = 0u64;
    for k in &m.kernels {
        let mut p = vec![0u8; k.param_bytes as usize];
        let mut nptr = 0;
        for par in &k.params {
            let o = par.offset as usize;
            match (par.ty, par.size) {
                (cuda_sim::ir::Ty::U64 | cuda_sim::ir::Ty::B64 | cuda_sim::ir::Ty::S64, 8) if nptr < 8 => {
                    p[o..o + 8].copy_from_slice(&bufs[nptr].to_le_bytes());
                    nptr += 1;
                }
                (cuda_sim::ir::Ty::F32, 4) => p[o..o + 4].copy_from_slice(&0.5f32.to_le_bytes()),
                (cuda_sim::ir::Ty::F64, 8) => p[o..o + 8].copy_from_slice(&0.5f64.to_le_bytes()),
                (_, 4) => p[o..o + 4].copy_from_slice(&8u32.to_le_bytes()),
                _ => {}
            }
        }
        let bx = k.maxntid.map(|t| t[0] * t[1] * t[2]).unwrap_or(128).min(256);
        let cfg = LaunchConfig { grid: [2, 2, 1], block: [bx, 1, 1], dyn_shared_bytes: 0 };
        let o = launch(&m, k, &globals, &cfg, &p, &mem, &ExecOptions::default());
        for r in &o.reports {
            assert!(r.kind != cuda_sim::exec::ReportKind::Error, "{}: {}", k.name, r.message);
            if std::env::var_os("SHOW_REPORTS").is_some() {
                eprintln!("{}", r.message);
            }
        }
        total += o.stats.thread_instructions;
    }
    eprintln!("{} kernels, {total} thread-instructions", m.kernels.len());
}
