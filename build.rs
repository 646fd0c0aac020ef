//! Compiles every `kernels/*.cu` into one fatbin (sm_80, sm_89 and sm_90 SASS plus compute_90 PTX) that
//! src/backend/cuda.rs embeds. nvcc is found through `NVCC`, `CUDA_HOME` or `PATH`; without it the build still
//! succeeds (with a warning) and the CUDA backend reports "built without CUDA kernels". The `ptxas -v` report
//! (registers, spills per kernel) is embedded too: `ddpm-cuda kernels` prints it. The fatbin is uncompressed
//! (`--no-compress`) so its PTX is readable text for the CUDA simulator (tools/cuda-sim, scripts/cuda-sim.sh).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENCODE: &[&str] = &[
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_89,code=sm_89",
    "-gencode=arch=compute_90,code=[sm_90,compute_90]",
];

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.exists() {
            return Some(p);
        }
    }
    env::var_os("PATH").and_then(|paths| env::split_paths(&paths).map(|d| d.join("nvcc")).find(|p| p.exists()))
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=PATH");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let fatbin = out.join("kernels.fatbin");
    let report = out.join("ptxas.txt");

    let mut sources: Vec<PathBuf> = fs::read_dir("kernels")
        .expect("kernels/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }

    let Some(nvcc) = find_nvcc() else {
        println!("cargo:warning=nvcc not found (set NVCC or CUDA_HOME): building without CUDA kernels");
        fs::write(&fatbin, b"").unwrap();
        fs::write(&report, "built without CUDA kernels: nvcc was not found at build time\n").unwrap();
        return;
    };

    // One translation unit including every kernel file gives one module to load.
    let unit = out.join("all_kernels.cu");
    let includes: String =
        sources.iter().map(|s| format!("#include \"{}\"\n", fs::canonicalize(s).unwrap().display())).collect();
    fs::write(&unit, includes).unwrap();

    let output = Command::new(&nvcc)
        // --no-compress keeps the PTX in the fatbin as plain text (nvcc 13 compresses it by default), so the CUDA
        // simulator (tools/cuda-sim) can read it; the driver loads either form.
        .args(["--fatbin", "--no-compress", "-O3", "-lineinfo", "-std=c++17", "-Xptxas", "-v"])
        .arg(format!("-I{}", fs::canonicalize("kernels").unwrap().display()))
        .args(GENCODE)
        .arg("-o")
        .arg(&fatbin)
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", nvcc.display()));
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!("nvcc failed on kernels/*.cu:\n{log}{}", String::from_utf8_lossy(&output.stdout));
    }
    fs::write(&report, summarize_ptxas(&log)).unwrap();
}

/// One line per kernel and arch from `ptxas -v`: registers, spills, shared memory.
fn summarize_ptxas(log: &str) -> String {
    let mut out = format!("{:<32} {:<6} {}\n", "kernel", "arch", "ptxas -v");
    let (mut kernel, mut arch, mut frame) = (String::new(), String::new(), String::new());
    for line in log.lines() {
        let line = line.trim_start_matches("ptxas info    : ").trim();
        if let Some(rest) = line.strip_prefix("Compiling entry function '") {
            kernel = rest.split('\'').next().unwrap_or("").to_string();
            arch = rest.rsplit("for '").next().unwrap_or("").trim_end_matches('\'').to_string();
        } else if line.contains("bytes stack frame") {
            frame = line.to_string();
        } else if line.starts_with("Used ") {
            out.push_str(&format!("{kernel:<32} {arch:<6} {line}; {frame}\n"));
        }
    }
    out
}
