//! Parses the PTX nvcc 13.0 emits for the project's kernels (a committed copy, see the file's first line).

use cuda_sim::ir::{AddrBase, Op, Space, SymbolRef, Ty};
use cuda_sim::parse::parse;

const KERNELS: &str = include_str!("data/kernels_compute90.ptx");

#[test]
fn all_kernels_parse() {
    let t = std::time::Instant::now();
    let m = parse(KERNELS).unwrap_or_else(|e| panic!("{e}"));
    let dt = t.elapsed();
    let n: usize = m.kernels.iter().map(|k| k.insts.len()).sum();
    println!("parsed {} kernels, {n} instructions, {} bytes of PTX in {dt:?}", m.kernels.len(), KERNELS.len());
    assert_eq!(m.kernels.len(), 41);
    assert_eq!(m.version, "9.0");
    assert_eq!(m.target, "sm_90");
    assert_eq!(m.files.len(), 21);
}
