//! CUDA kernel microbenchmarks at the cifar10 U-Net's shapes (batch 128): `cargo bench --bench kernels_cuda`, the
//! same table as `ddpm-cuda bench kernels --device cuda`. The rows live beside each op (`src/ops/<op>/check.rs`,
//! `benches`) and are timed by `ddpm_cuda::bench::kernels`: median of 15 calls after 3 warm-up calls, with a
//! stream synchronisation around each; achieved TFLOP/s (GEMM-shaped ops) or GB/s (memory-bound ops) and the
//! share of the H200's peaks. Without a usable GPU it prints "skipped: no CUDA device (reason)" and exits 0.
//! Optional argument: a substring to select ops (`cargo bench --bench kernels_cuda -- conv`).

use ddpm_cuda::bench::kernels::{self, Options, TABLE_HEADER};
use ddpm_cuda::Device;

fn main() {
    let device = match Device::parse("cuda") {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            return;
        }
    };
    // `cargo bench` passes "--bench"; any other argument selects ops by substring.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let opts = Options { filter, ..Options::default() };
    println!(
        "CUDA kernels on {device}, batch {}: median of {} after {} warm-up calls",
        opts.batch, opts.runs, opts.warmup
    );
    println!("{TABLE_HEADER}");
    if let Err(e) = kernels::run(&device, &opts, |m| println!("{}", m.markdown())) {
        eprintln!("kernels_cuda: {e}");
        std::process::exit(1);
    }
}
