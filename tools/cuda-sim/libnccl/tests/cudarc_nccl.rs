//! cudarc's NCCL API through the stand-ins: this test re-runs its own binary under `scripts/cuda-sim.sh` with four
//! simulated devices; the child drives `cudarc::nccl` as ddpm-cuda does: one thread per rank
//! (`Comm::from_rank`), all-reduce in f32 and bf16 summed in rank order, broadcast, one thread driving every
//! rank inside a group (`Comm::from_devices`), and all-reduces on a second stream ordered by events.

use std::path::PathBuf;
use std::process::Command;

use cudarc::driver::{CudaContext, CudaSlice, DevicePtrMut};
use cudarc::nccl::{group_end, group_start, result, sys, Comm, Id, ReduceOp};
use half::bf16;

const CHILD: &str = "CUDA_SIM_NCCL_CHILD";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

#[test]
fn cudarc_nccl_runs_on_the_stand_in() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let reports = std::env::temp_dir().join(format!("cuda-sim-nccl-{}.txt", std::process::id()));
    let out = Command::new(root().join("scripts/cuda-sim.sh"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cudarc_nccl_runs_on_the_stand_in", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("DDPM_CUDA_SIM_DEVICES", "4")
        .env("DDPM_CUDA_SIM_REPORTS", &reports)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("nccl child: all checks passed"), "{stdout}\n{stderr}");
    let r = std::fs::read_to_string(&reports).unwrap_or_default();
    assert!(r.is_empty(), "{r}");
    let _ = std::fs::remove_file(&reports);
}

/// Rank r's f32 contribution: element 0 is r + 1; element 1 is 1e8, 1, −1e8, 0.5 for ranks 0..3, whose sum in
/// rank order is ((1e8 + 1) − 1e8) + 0.5 = 0.5 in f32 (any order that adds 1 after −1e8 gives 1.5).
fn contribution(r: usize) -> Vec<f32> {
    vec![r as f32 + 1.0, [1e8, 1.0, -1e8, 0.5][r], 0.25 * r as f32]
}

fn child() {
    let n = 4;
    assert_eq!(CudaContext::device_count().unwrap(), n as i32);
    assert_eq!(result::get_nccl_version().unwrap(), 23000);
    let id = Id::new().unwrap();
    let internal = *id.internal();
    let threads: Vec<_> = (0..n)
        .map(|r| {
            std::thread::spawn(move || {
                let ctx = CudaContext::new(r).unwrap();
                let stream = ctx.new_stream().unwrap();
                let comm = Comm::from_rank(stream.clone(), r, n, Id::uninit(internal)).unwrap();
                assert_eq!((comm.rank(), comm.world_size()), (r, n));
                let send = stream.clone_htod(&contribution(r)).unwrap();
                let mut recv = stream.alloc_zeros::<f32>(3).unwrap();
                comm.all_reduce(&send, &mut recv, &ReduceOp::Sum).unwrap();
                let sum = stream.clone_dtoh(&recv).unwrap();
                let b: Vec<bf16> =
                    [256.0f32, 1.0, 1.0, 0.0].iter().map(|&v| bf16::from_f32(if r == 0 { v } else { 1.0 })).collect();
                let mut bb = stream.clone_htod(&b).unwrap();
                comm.all_reduce_in_place(&mut bb, &ReduceOp::Sum).unwrap();
                let bsum: Vec<f32> = stream.clone_dtoh(&bb).unwrap().iter().map(|v| v.to_f32()).collect();
                let mut data = stream.clone_htod(&[r as f32 * 10.0; 5]).unwrap();
                comm.broadcast_in_place(&mut data, 2).unwrap();
                let bc = stream.clone_dtoh(&data).unwrap();
                (sum, bsum, bc)
            })
        })
        .collect();
    for t in threads {
        let (sum, bsum, bc) = t.join().unwrap();
        assert_eq!(sum, vec![10.0, 0.5, 1.5]);
        // bf16 accumulates in f32: 256 + 1 + 1 + 1 = 259 rounds once to 260 (bf16 steps by 2 there); folding in
        // bf16 would stay at 256.
        assert_eq!(bsum, vec![260.0, 4.0, 4.0, 3.0]);
        assert_eq!(bc, vec![20.0; 5]);
    }

    // One thread, every rank, inside a group.
    let streams: Vec<_> = (0..n).map(|r| CudaContext::new(r).unwrap().new_stream().unwrap()).collect();
    let comms = Comm::from_devices(streams.clone()).unwrap();
    let sends: Vec<_> = (0..n).map(|r| streams[r].clone_htod(&contribution(r)).unwrap()).collect();
    let mut recvs: Vec<_> = (0..n).map(|r| streams[r].alloc_zeros::<f32>(3).unwrap()).collect();
    group_start().unwrap();
    for r in 0..n {
        comms[r].all_reduce(&sends[r], &mut recvs[r], &ReduceOp::Sum).unwrap();
    }
    group_end().unwrap();
    for r in 0..n {
        assert_eq!(streams[r].clone_dtoh(&recvs[r]).unwrap(), vec![10.0, 0.5, 1.5]);
        assert_eq!(comms[r].ordinal(), r);
    }
    // A rank's collectives on a stream of their own, beside its compute stream (as ddpm-cuda overlaps the
    // gradient all-reduce with the backward pass): buffers written on the compute stream, all-reduced one by one
    // on the second after an event, read back after the second's event; each summed in rank order.
    let id = Id::new().unwrap();
    let internal = sys::ncclUniqueId { internal: *id.internal() };
    let threads: Vec<_> = (0..n)
        .map(|r| {
            std::thread::spawn(move || {
                let ctx = CudaContext::new(r).unwrap();
                let (compute, side) = (ctx.new_stream().unwrap(), ctx.new_stream().unwrap());
                let mut raw = std::mem::MaybeUninit::uninit();
                // SAFETY: a valid out-pointer, initialised by the successful call.
                let raw = unsafe {
                    result::comm_init_rank(raw.as_mut_ptr(), n as i32, internal, r as i32).unwrap();
                    raw.assume_init()
                };
                let mut buckets: Vec<CudaSlice<f32>> =
                    (0..3).map(|k| compute.clone_htod(&[(10 * r + k) as f32, contribution(r)[1]]).unwrap()).collect();
                for b in &mut buckets {
                    side.wait(&compute.record_event(None).unwrap()).unwrap();
                    let (ptr, _record) = b.device_ptr_mut(&side);
                    // SAFETY: in place on a live buffer of 2 floats, ordered after its writer by the event.
                    unsafe {
                        result::all_reduce(
                            ptr as *const _,
                            ptr as *mut _,
                            2,
                            sys::ncclDataType_t::ncclFloat32,
                            sys::ncclRedOp_t::ncclSum,
                            raw,
                            side.cu_stream() as sys::cudaStream_t,
                        )
                        .unwrap();
                    }
                }
                compute.wait(&side.record_event(None).unwrap()).unwrap();
                let sums: Vec<Vec<f32>> = buckets.iter().map(|b| compute.clone_dtoh(b).unwrap()).collect();
                // SAFETY: the communicator made above, released once.
                unsafe { result::comm_destroy(raw) }.unwrap();
                sums
            })
        })
        .collect();
    for t in threads {
        // Σ_r (10r + k) = 60 + 4k; the second element only in rank order gives 0.5.
        assert_eq!(t.join().unwrap(), vec![vec![60.0, 0.5], vec![64.0, 0.5], vec![68.0, 0.5]]);
    }
    println!("nccl child: all checks passed");
}
