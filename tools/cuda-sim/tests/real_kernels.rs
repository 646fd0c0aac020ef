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
    let (mm, nn, kk) = (96usize, 80usize, 72usize);
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
