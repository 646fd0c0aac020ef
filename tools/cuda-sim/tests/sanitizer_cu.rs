//! The sanitizer's proof on real nvcc output: small CUDA kernels with planted bugs (an out-of-bounds global write,
//! a misaligned float4 load, a missing `__syncthreads()` shared-memory race, a read of never-written device memory,
//! a block of 1025 threads), compiled with nvcc to PTX, parsed and launched. Each gives exactly the expected report
//! kind naming the kernel and the right `file:line`; the fixed kernels give none.
//!
//! nvcc comes from `$NVCC`, else the project's cached nvcc 13.0; without either the tests fail (they must not pass
//! silently).

use std::path::PathBuf;
use std::sync::OnceLock;

use cuda_sim::exec::{launch, ExecOptions, LaunchConfig, LaunchOutcome, ReportKind};
use cuda_sim::ir::Module;
use cuda_sim::mem::DeviceMemory;

const SRC: &str = r#"// sanitizer test kernels
extern "C" __global__ void oob_write(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = 1.0f; // @oob
}

extern "C" __global__ void oob_write_fixed(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 1.0f;
}

extern "C" __global__ void misaligned_load(const float* in, float* out, int off) {
    const float4* p = reinterpret_cast<const float4*>(in + off);
    float4 v = p[threadIdx.x]; // @misaligned
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

extern "C" __global__ void shared_race(float* out) {
    __shared__ float s[256];
    s[threadIdx.x] = (float)threadIdx.x; // @race_store
    out[threadIdx.x] = s[(threadIdx.x + 32) % blockDim.x]; // @race_load
}

extern "C" __global__ void shared_race_fixed(float* out) {
    __shared__ float s[256];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 32) % blockDim.x];
}

extern "C" __global__ void scale(const float* in, float* out) {
    out[threadIdx.x] = in[threadIdx.x] * 2.0f; // @uninit
}
"#;

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from("/root/.cache/ddpm-cuda/nvcc-13.0.88/lib");
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            let p = e.path().join("site-packages/nvidia/cu13/bin/nvcc");
            if p.exists() {
                return p;
            }
        }
    }
    panic!("nvcc not found: set NVCC to the nvcc binary (nvcc 13.0 expected at {}/python3*/...)", root.display());
}

/// (PTX module, path of the .cu as the PTX names it)
fn module() -> &'static (Module, String) {
    static M: OnceLock<(Module, String)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cuda-sim-sanitizer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cu = dir.join("sanitizer_kernels.cu");
        let ptx = dir.join("sanitizer_kernels.ptx");
        std::fs::write(&cu, SRC).unwrap();
        let out = std::process::Command::new(nvcc())
            .args(["-arch=compute_90", "-ptx", "-O3", "-lineinfo", "-o"])
            .arg(&ptx)
            .arg(&cu)
            .output()
            .unwrap_or_else(|e| panic!("running nvcc (set NVCC): {e}"));
        assert!(out.status.success(), "nvcc failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&ptx).unwrap();
        let m = cuda_sim::parse::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        (m, "sanitizer_kernels.cu".to_string())
    })
}

fn line_of(marker: &str) -> String {
    let n = SRC.lines().position(|l| l.contains(marker)).unwrap() + 1;
    format!("{}:{n}", module().1)
}

enum Arg {
    Ptr(u64),
    I32(i32),
}

fn run(name: &str, grid: u32, block: u32, args: &[Arg], mem: &DeviceMemory) -> LaunchOutcome {
    let m = &module().0;
    let k = m.kernel(name).unwrap_or_else(|| panic!("no kernel {name}"));
    let mut p = vec![0u8; k.param_bytes as usize];
    assert_eq!(k.params.len(), args.len());
    for (par, a) in k.params.iter().zip(args) {
        let o = par.offset as usize;
        match a {
            Arg::Ptr(v) => p[o..o + 8].copy_from_slice(&v.to_le_bytes()),
            Arg::I32(v) => p[o..o + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }
    let cfg = LaunchConfig { grid: [grid, 1, 1], block: [block, 1, 1], dyn_shared_bytes: 0 };
    launch(m, k, &[], &cfg, &p, mem, &ExecOptions::default())
}

fn expect(o: &LaunchOutcome, kind: ReportKind, kernel: &str, lines: &[String], failed: bool) {
    assert!(!o.reports.is_empty(), "{kernel}: no report");
    for r in &o.reports {
        assert_eq!(r.kind, kind, "{kernel}: {:#?}", o.reports);
        assert!(r.message.contains(kernel), "{}", r.message);
        if !lines.is_empty() {
            assert!(lines.iter().any(|l| r.message.contains(&format!("{l} "))), "want {lines:?}: {}", r.message);
        }
    }
    assert_eq!(o.failed, failed, "{:#?}", o.reports);
    eprintln!("{}", o.reports[0].message);
}

fn clean(o: &LaunchOutcome) {
    assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
}

#[test]
fn out_of_bounds_global_write() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(100 * 4, "out").unwrap();
    let o = run("oob_write", 1, 128, &[Arg::Ptr(out), Arg::I32(100)], &mem);
    expect(&o, ReportKind::Memcheck, "oob_write", &[line_of("@oob")], true);
    assert!(o.reports[0].message.contains("thread (100,0,0)"), "{}", o.reports[0].message);
    assert!(o.reports[0].message.contains("nearest allocation: 400 bytes"), "{}", o.reports[0].message);
    let o = run("oob_write_fixed", 1, 128, &[Arg::Ptr(out), Arg::I32(100)], &mem);
    clean(&o);
}

#[test]
fn misaligned_float4_load() {
    let mem = DeviceMemory::new();
    let inp = mem.alloc(4096, "in").unwrap();
    mem.write(inp, &[0u8; 4096]).unwrap();
    let out = mem.alloc(4096, "out").unwrap();
    let o = run("misaligned_load", 1, 32, &[Arg::Ptr(inp), Arg::Ptr(out), Arg::I32(1)], &mem);
    expect(&o, ReportKind::Memcheck, "misaligned_load", &[line_of("@misaligned")], true);
    assert!(o.reports[0].message.contains("misaligned") && o.reports[0].message.contains("size 16"));
    let o = run("misaligned_load", 1, 32, &[Arg::Ptr(inp), Arg::Ptr(out), Arg::I32(0)], &mem);
    clean(&o);
}

#[test]
fn missing_syncthreads_race() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(4096, "out").unwrap();
    let o = run("shared_race", 2, 256, &[Arg::Ptr(out)], &mem);
    expect(&o, ReportKind::Racecheck, "shared_race", &[line_of("@race_store"), line_of("@race_load")], false);
    let o = run("shared_race_fixed", 2, 256, &[Arg::Ptr(out)], &mem);
    clean(&o);
    let mut b = vec![0u8; 1024];
    mem.read(out, &mut b).unwrap();
    for t in 0..256 {
        let v = f32::from_le_bytes(b[t * 4..t * 4 + 4].try_into().unwrap());
        assert_eq!(v, ((t + 32) % 256) as f32);
    }
}

#[test]
fn read_of_never_written_memory() {
    let mem = DeviceMemory::new();
    let inp = mem.alloc(256 * 4, "in (never written)").unwrap();
    let out = mem.alloc(256 * 4, "out").unwrap();
    let o = run("scale", 1, 256, &[Arg::Ptr(inp), Arg::Ptr(out)], &mem);
    expect(&o, ReportKind::Initcheck, "scale", &[line_of("@uninit")], false);
    assert_eq!(o.reports.len(), 1, "one report per kernel and allocation");
    let v: Vec<u8> = (0..256u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    mem.write(inp, &v).unwrap();
    let o = run("scale", 1, 256, &[Arg::Ptr(inp), Arg::Ptr(out)], &mem);
    clean(&o);
    let mut b = vec![0u8; 1024];
    mem.read(out, &mut b).unwrap();
    assert_eq!(f32::from_le_bytes(b[400..404].try_into().unwrap()), 200.0);
}

#[test]
fn block_of_1025_threads() {
    let mem = DeviceMemory::new();
    let out = mem.alloc(8192, "out").unwrap();
    let o = run("oob_write_fixed", 1, 1025, &[Arg::Ptr(out), Arg::I32(2048)], &mem);
    expect(&o, ReportKind::Launch, "oob_write_fixed", &[], true);
    assert!(o.reports[0].message.contains("1025"));
    let o = run("oob_write_fixed", 1, 1024, &[Arg::Ptr(out), Arg::I32(2048)], &mem);
    clean(&o);
}
