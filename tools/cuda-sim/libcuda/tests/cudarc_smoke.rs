//! cudarc itself, through the stand-ins: this test re-runs its own binary under `scripts/cuda-sim.sh` (which builds
//! libcuda.so / libcublas.so and puts them first on LD_LIBRARY_PATH); the child half then drives cudarc's safe API:
//! context, alloc/memset/copies both ways, a module from PTX text and a launch, a captured graph replayed twice,
//! and cuBLAS sgemm with transposes against a reference.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::sys::{CUdevice_attribute, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaStream, LaunchConfig, PushKernelArg};

const AXPY_PTX: &str = include_str!("data/axpy.ptx");
const CHILD: &str = "CUDA_SIM_SMOKE_CHILD";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

#[test]
fn cudarc_runs_on_the_stand_ins() {
    if std::env::var_os(CHILD).is_some_and(|v| v == "1") {
        child();
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cuda-sim-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (profile, reports) = (dir.join("profile.jsonl"), dir.join("reports.txt"));
    let out = Command::new(root().join("scripts/cuda-sim.sh"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cudarc_runs_on_the_stand_ins", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("DDPM_CUDA_SIM_PROFILE", &profile)
        .env("DDPM_CUDA_SIM_REPORTS", &reports)
        // One host thread: the launch stops at the first faulting CTA (in parallel, another CTA may fault too).
        .env("DDPM_CUDA_SIM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("child: all checks passed"), "{stdout}\n{stderr}");
    let reports = std::fs::read_to_string(&reports).unwrap_or_default();
    assert!(reports.is_empty() && !stderr.contains("========="), "reports:\n{reports}\n{stderr}");
    let profile = std::fs::read_to_string(&profile).unwrap();
    assert!(
        profile.lines().any(|l| l.starts_with("{\"kernel\":\"axpy\",\"grid\":[4,1,1],\"block\":[64,1,1]")),
        "{profile}"
    );
    assert!(profile.lines().any(|l| l.starts_with("{\"kernel\":\"cublasSgemm_v2\"")), "{profile}");
    let process = profile.lines().find(|l| l.starts_with("{\"process\"")).expect("process line");
    // One direct launch and two graph replays of one captured launch.
    assert!(process.contains("\"kernel_launches\":3,\"graph_launches\":2"), "{process}");
    assert!(process.contains("\"cublas_calls\":2"), "{process}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kernel that reads and writes past its buffers: the launch fails with CUDA_ERROR_ILLEGAL_ADDRESS, later calls
/// return it too (sticky, like a real context), the report goes to stderr and the reports file, and the process
/// exits nonzero even though `main` returned normally.
#[test]
fn a_memory_fault_is_reported_and_fails_the_process() {
    if std::env::var_os(CHILD).is_some_and(|v| v == "fault") {
        fault_child();
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cuda-sim-fault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reports = dir.join("reports.txt");
    let out = Command::new(root().join("scripts/cuda-sim.sh"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "a_memory_fault_is_reported_and_fails_the_process", "--nocapture", "--test-threads=1"])
        .env(CHILD, "fault")
        .env("DDPM_CUDA_SIM_DEVICES", "2")
        .env("DDPM_CUDA_SIM_REPORTS", &reports)
        // One host thread: the launch stops at the first faulting CTA (in parallel, another CTA may fault too).
        .env("DDPM_CUDA_SIM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("fault child: done"), "{stdout}\n{stderr}");
    assert!(!out.status.success(), "a reported fault must fail the process:\n{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("========= cuda-sim: ") && l.contains("axpy")), "{stderr}");
    assert!(stderr.contains("========= cuda-sim: 1 errors"), "{stderr}");
    let reports = std::fs::read_to_string(&reports).unwrap();
    assert!(reports.contains("axpy"), "{reports}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn fault_child() {
    assert_eq!(CudaContext::device_count().unwrap(), 2);
    let ctx = CudaContext::new(1).unwrap();
    let stream = ctx.new_stream().unwrap();
    let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(AXPY_PTX)).unwrap();
    let f = module.load_function("axpy").unwrap();
    let x = stream.clone_htod(&[1.0f32; 100]).unwrap();
    let mut y = stream.alloc_zeros::<f32>(100).unwrap();
    let n = 256i32;
    let cfg = LaunchConfig { grid_dim: (4, 1, 1), block_dim: (64, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: deliberately not: n is larger than both buffers (the simulator catches it).
    let r = unsafe { stream.launch_builder(&f).arg(&1.0f32).arg(&x).arg(&mut y).arg(&n).launch(cfg) };
    let e = r.expect_err("the launch must fail");
    assert!(format!("{e:?}").contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{e:?}");
    let e = stream.synchronize().expect_err("the error is sticky");
    assert!(format!("{e:?}").contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{e:?}");
    println!("fault child: done");
    // Leak everything: dropping would only record more (sticky) errors.
    std::mem::forget((x, y, f, module, stream, ctx));
}

/// Two simulated devices have separate memory: a kernel on device 1 runs on its own buffers and gets the same
/// numbers as on device 0, a copy between the devices works (unified addressing), and a kernel on device 1 handed
/// a pointer of device 0 faults (no peer access), reported like any other memory fault.
#[test]
fn devices_have_their_own_memory() {
    if std::env::var_os(CHILD).is_some_and(|v| v == "devices") {
        devices_child();
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cuda-sim-devices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reports = dir.join("reports.txt");
    let out = Command::new(root().join("scripts/cuda-sim.sh"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "devices_have_their_own_memory", "--nocapture", "--test-threads=1"])
        .env(CHILD, "devices")
        .env("DDPM_CUDA_SIM_DEVICES", "2")
        .env("DDPM_CUDA_SIM_REPORTS", &reports)
        // One host thread: the launch stops at the first faulting CTA (in parallel, another CTA may fault too).
        .env("DDPM_CUDA_SIM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("devices child: done"), "{stdout}\n{stderr}");
    assert!(!out.status.success(), "the cross-device fault must fail the process:\n{stderr}");
    let reports = std::fs::read_to_string(&reports).unwrap();
    assert!(reports.contains("axpy") && reports.contains("Memcheck"), "{reports}");
    assert!(stderr.contains("========= cuda-sim: 1 errors"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn devices_child() {
    assert_eq!(CudaContext::device_count().unwrap(), 2);
    let (ctx0, ctx1) = (CudaContext::new(0).unwrap(), CudaContext::new(1).unwrap());
    let (s0, s1) = (ctx0.new_stream().unwrap(), ctx1.new_stream().unwrap());
    let f0 = ctx0.load_module(cudarc::nvrtc::Ptx::from_src(AXPY_PTX)).unwrap().load_function("axpy").unwrap();
    let f1 = ctx1.load_module(cudarc::nvrtc::Ptx::from_src(AXPY_PTX)).unwrap().load_function("axpy").unwrap();
    let host: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let x0 = s0.clone_htod(&host).unwrap();
    let mut y0 = s0.alloc_zeros::<f32>(100).unwrap();
    let x1 = s1.clone_htod(&host).unwrap();
    let mut y1 = s1.alloc_zeros::<f32>(100).unwrap();
    launch_axpy(&s0, &f0, 2.0, &x0, &mut y0);
    launch_axpy(&s1, &f1, 2.0, &x1, &mut y1);
    let want: Vec<f32> = host.iter().map(|v| 2.0 * v).collect();
    assert_eq!(s0.clone_dtoh(&y0).unwrap(), want);
    assert_eq!(s1.clone_dtoh(&y1).unwrap(), want);
    // A peer copy: device 0's x into a device-1 buffer.
    let mut z1 = s1.alloc_zeros::<f32>(100).unwrap();
    s1.memcpy_dtod(&x0, &mut z1).unwrap();
    assert_eq!(s1.clone_dtoh(&z1).unwrap(), host);
    // Device 0's buffer in a kernel on device 1: a memory fault.
    let n = 100i32;
    let cfg = LaunchConfig { grid_dim: (4, 1, 1), block_dim: (64, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: deliberately not: x0 lives on the other device (the simulator catches it).
    let r = unsafe { s1.launch_builder(&f1).arg(&1.0f32).arg(&x0).arg(&mut y1).arg(&n).launch(cfg) };
    let e = r.expect_err("the launch must fail");
    assert!(format!("{e:?}").contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{e:?}");
    println!("devices child: done");
    std::mem::forget((x0, y0, x1, y1, z1, f0, f1, s0, s1, ctx0, ctx1));
}

fn launch_axpy(
    stream: &Arc<CudaStream>,
    f: &cudarc::driver::CudaFunction,
    a: f32,
    x: &cudarc::driver::CudaSlice<f32>,
    y: &mut cudarc::driver::CudaSlice<f32>,
) {
    let n = x.len() as i32;
    let cfg = LaunchConfig { grid_dim: (4, 1, 1), block_dim: (64, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: axpy reads n floats of x and updates n floats of y; the grid covers 256 >= n threads.
    unsafe { stream.launch_builder(f).arg(&a).arg(x).arg(y).arg(&n).launch(cfg) }.unwrap();
}

fn child() {
    assert_eq!(CudaContext::device_count().unwrap(), 1);
    let ctx = CudaContext::new(0).unwrap();
    assert_eq!(ctx.name().unwrap(), "NVIDIA H200 (cuda-sim)");
    assert_eq!(ctx.compute_capability().unwrap(), (9, 0));
    assert_eq!(ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).unwrap(), 132);
    let stream = ctx.new_stream().unwrap();

    // Memory: alloc, memset, copies both ways and device to device.
    let host: Vec<f32> = (0..200).map(|i| i as f32 * 0.5).collect();
    let x = stream.clone_htod(&host).unwrap();
    assert_eq!(stream.clone_dtoh(&x).unwrap(), host);
    let mut z = stream.alloc_zeros::<f32>(200).unwrap();
    assert!(stream.clone_dtoh(&z).unwrap().iter().all(|&v| v == 0.0));
    stream.memcpy_dtod(&x, &mut z).unwrap();
    assert_eq!(stream.clone_dtoh(&z).unwrap(), host);
    stream.memset_zeros(&mut z).unwrap();
    assert!(stream.clone_dtoh(&z).unwrap().iter().all(|&v| v == 0.0));
    let y_copy = stream.clone_dtod(&x).unwrap();
    assert_eq!(stream.clone_dtoh(&y_copy).unwrap(), host);

    // A module from PTX text, one launch.
    let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(AXPY_PTX)).unwrap();
    let f = module.load_function("axpy").unwrap();
    let mut y = stream.alloc_zeros::<f32>(200).unwrap();
    launch_axpy(&stream, &f, 2.0, &x, &mut y);
    let want: Vec<f32> = host.iter().map(|v| 2.0 * v).collect();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), want);

    // Capture the same launch into a graph; nothing runs until it is replayed, then it runs at each replay.
    stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).unwrap();
    launch_axpy(&stream, &f, 1.0, &x, &mut y);
    let graph = stream.end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH).unwrap();
    let graph = graph.expect("a graph");
    assert_eq!(stream.clone_dtoh(&y).unwrap(), want, "capture must not run the launch");
    graph.launch().unwrap();
    graph.launch().unwrap();
    let want: Vec<f32> = host.iter().map(|v| 4.0 * v).collect();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), want);
    drop(graph);

    // cuBLAS sgemm, column-major with transposes and padded leading dimensions.
    let blas = CudaBlas::new(stream.clone()).unwrap();
    let (m, n, k) = (3usize, 4usize, 5usize);
    let (lda, ldb, ldc) = (k + 1, k + 2, m + 1); // op(A) = Aᵀ (A stored k×m), op(B) = B (stored k×n)
    let a: Vec<f32> = (0..lda * m).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
    let b: Vec<f32> = (0..ldb * n).map(|i| ((i * 5 % 13) as f32) * 0.25).collect();
    let c0: Vec<f32> = (0..ldc * n).map(|i| i as f32).collect();
    let (da, db) = (stream.clone_htod(&a).unwrap(), stream.clone_htod(&b).unwrap());
    let mut dc = stream.clone_htod(&c0).unwrap();
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: m as i32,
        n: n as i32,
        k: k as i32,
        alpha: 1.5f32,
        lda: lda as i32,
        ldb: ldb as i32,
        beta: 0.5f32,
        ldc: ldc as i32,
    };
    // SAFETY: the buffers hold every element the config addresses.
    unsafe { blas.gemm(cfg, &da, &db, &mut dc) }.unwrap();
    let got = stream.clone_dtoh(&dc).unwrap();
    let mut want = c0.clone();
    for j in 0..n {
        for i in 0..m {
            let dot: f64 = (0..k).map(|p| a[p + i * lda] as f64 * b[p + j * ldb] as f64).sum();
            want[i + j * ldc] = (1.5 * dot + 0.5 * c0[i + j * ldc] as f64) as f32;
        }
    }
    assert_eq!(got, want);

    // Strided batched, beta = 0 over garbage C.
    let cfg = StridedBatchedConfig {
        gemm: GemmConfig { transa: cublasOperation_t::CUBLAS_OP_N, lda: m as i32, beta: 0.0, ..cfg },
        batch_size: 2,
        stride_a: (m * k) as i64,
        stride_b: (ldb * n) as i64,
        stride_c: (ldc * n) as i64,
    };
    let a2: Vec<f32> = (0..2 * m * k).map(|i| (i % 5) as f32 - 2.0).collect();
    let b2: Vec<f32> = (0..2 * ldb * n).map(|i| (i % 3) as f32).collect();
    let (da2, db2) = (stream.clone_htod(&a2).unwrap(), stream.clone_htod(&b2).unwrap());
    let mut dc2 = stream.clone_htod(&vec![f32::NAN; 2 * ldc * n]).unwrap();
    // SAFETY: as above.
    unsafe { blas.gemm_strided_batched(cfg, &da2, &db2, &mut dc2) }.unwrap();
    let got = stream.clone_dtoh(&dc2).unwrap();
    for bi in 0..2 {
        for j in 0..n {
            for i in 0..m {
                let dot: f64 =
                    (0..k).map(|p| a2[bi * m * k + i + p * m] as f64 * b2[bi * ldb * n + p + j * ldb] as f64).sum();
                assert_eq!(got[bi * ldc * n + i + j * ldc], (1.5 * dot) as f32, "batch {bi} C({i},{j})");
            }
            assert!(got[bi * ldc * n + m + j * ldc].is_nan(), "the gap row is not written");
        }
    }
    stream.synchronize().unwrap();
    println!("child: all checks passed");
}
