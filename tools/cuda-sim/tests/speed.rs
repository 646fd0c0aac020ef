//! Interpreter speed on the project's real conv2d_forward_f32 kernel (nvcc 13.0 PTX, committed copy), on one host
//! thread with every sanitizer check on, in thread-instructions per CPU second (CPU time, so a busy machine skews
//! it less than wall time). Ignored by default (it takes a few seconds); run it with
//!
//!   cargo test -p cuda-sim --release --test speed -- --ignored --nocapture
//!
//! It also prints a checksum of the output bits: an optimisation of the interpreter must not change it.

use cuda_sim::exec::{launch, ExecOptions, LaunchConfig};
use cuda_sim::mem::DeviceMemory;

const KERNELS: &str = include_str!("data/kernels_compute90.ptx");

/// Nanoseconds this thread has been on a CPU (Linux).
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

#[test]
#[ignore = "speed measurement; run with --ignored --nocapture"]
fn conv2d_forward_f32_speed() {
    let m = cuda_sim::parse::parse(KERNELS).unwrap_or_else(|e| panic!("{e}"));
    let k = m.kernel("conv2d_forward_f32").unwrap();
    let mem = DeviceMemory::new();
    // n, cin, h, w, cout, kh, kw, ho, wo, stride, pad_top, pad_left
    let (n, cin, h, w, cout, kh, kw) = (2usize, 64usize, 16usize, 16usize, 64usize, 3usize, 3usize);
    let (ho, wo) = (h, w);
    let geom: [i32; 12] =
        [n as i32, cin as i32, h as i32, w as i32, cout as i32, kh as i32, kw as i32, ho as i32, wo as i32, 1, 1, 1];
    let x: Vec<f32> = (0..n * cin * h * w).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
    let wt: Vec<f32> = (0..cout * cin * kh * kw).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let bias: Vec<f32> = (0..cout).map(|i| i as f32 / 16.0).collect();
    let dx = upload(&mem, &x, "x");
    let dw = upload(&mem, &wt, "w");
    let db = upload(&mem, &bias, "bias");
    let ny = n * cout * ho * wo;
    let dy = mem.alloc(ny as u64 * 4, "y").unwrap();
    let mut p = vec![0u8; k.param_bytes as usize];
    let put = |p: &mut Vec<u8>, i: usize, b: &[u8]| {
        let o = k.params[i].offset as usize;
        p[o..o + b.len()].copy_from_slice(b);
    };
    put(&mut p, 0, &dx.to_le_bytes());
    put(&mut p, 1, &dw.to_le_bytes());
    put(&mut p, 2, &db.to_le_bytes());
    put(&mut p, 3, &1u32.to_le_bytes());
    put(&mut p, 4, &dy.to_le_bytes());
    let g: Vec<u8> = geom.iter().flat_map(|v| v.to_le_bytes()).collect();
    put(&mut p, 5, &g);
    let cfg = LaunchConfig {
        grid: [((n * ho * wo) as u32).div_ceil(64), (cout as u32).div_ceil(64), 1],
        block: [256, 1, 1],
        dyn_shared_bytes: 0,
    };
    let opts = ExecOptions { threads: 1, ..ExecOptions::default() };
    let mut best = f64::MAX;
    let mut stats = None;
    for _ in 0..5 {
        let c0 = thread_cpu_ns().unwrap_or(0);
        let t0 = std::time::Instant::now();
        let o = launch(&m, k, &[], &cfg, &p, &mem, &opts);
        let cpu = thread_cpu_ns().map(|c1| (c1 - c0) as f64 * 1e-9).unwrap_or_else(|| t0.elapsed().as_secs_f64());
        assert!(!o.failed && o.reports.is_empty(), "{:#?}", o.reports);
        best = best.min(cpu);
        stats = Some(o.stats);
    }
    let s = stats.unwrap();
    let mut out = vec![0u8; ny * 4];
    mem.read(dy, &mut out).unwrap();
    // FNV-1a of the output bits
    let sum = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    // spot-check against a CPU reference
    for &(ni, co, oh, ow) in &[(0usize, 0usize, 0usize, 0usize), (1, 63, 15, 15), (1, 17, 7, 3), (0, 40, 0, 9)] {
        let mut want = bias[co] as f64;
        for ci in 0..cin {
            for ki in 0..kh {
                for kj in 0..kw {
                    let (ih, iw) = (oh as isize + ki as isize - 1, ow as isize + kj as isize - 1);
                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                        continue;
                    }
                    let xv = x[((ni * cin + ci) * h + ih as usize) * w + iw as usize] as f64;
                    want += xv * wt[((co * cin + ci) * kh + ki) * kw + kj] as f64;
                }
            }
        }
        let i = ((ni * cout + co) * ho + oh) * wo + ow;
        let got = f32::from_le_bytes(out[i * 4..i * 4 + 4].try_into().unwrap()) as f64;
        assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0), "y[{i}] = {got} want {want}");
    }
    eprintln!(
        "conv2d_forward_f32 on one host thread: {:.1} M thread-instructions per CPU second ({} thread-instructions, \
         best of 5: {best:.3} CPU s); output checksum {sum:#018x}",
        s.thread_instructions as f64 / best / 1e6,
        s.thread_instructions
    );
}
