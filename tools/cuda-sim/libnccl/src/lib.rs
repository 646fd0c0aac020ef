//! `libnccl.so` stand-in for cuda-sim: the NCCL calls ddpm-cuda makes through cudarc's `nccl` bindings
//! (which resolve each symbol on first use, so only these need to exist), with real behaviour:
//! `ncclGetUniqueId` starts a rendezvous hub (see `rendezvous`) whose address is the id, `ncclCommInitRank` /
//! `ncclCommInitAll` join it (ranks may be threads of one process or separate processes), `ncclAllReduce` and
//! `ncclBroadcast` / `ncclBcast` fold the ranks' buffers in rank order on the host (`reduce`), `ncclGroupStart` /
//! `ncclGroupEnd` defer a thread's collectives so that one thread can drive several ranks.
//!
//! Device memory is reached only through the driver API of the loaded `libcuda.so` (as the cuBLAS stand-in
//! does), inside host functions enqueued with `cuLaunchHostFunc` on the caller's stream: a collective happens in
//! stream order on each rank's stream. Under cuda-sim host functions run when enqueued, so a failed collective
//! (a lost rank, a timeout) is returned by the call itself as `ncclRemoteError`, with the reason from
//! `ncclGetLastError`; the communicator stays failed (`ncclCommGetAsyncError`).
//!
//! Limits: one thread driving several ranks inside a group moves each rank's buffers through a socket before it
//! reads any result, so such groups suit small buffers (one thread per rank has no such limit).

#![allow(non_snake_case, clippy::missing_safety_doc)]

pub mod reduce;
pub mod rendezvous;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys as drv;
use cudarc::nccl::sys::{cudaStream_t, ncclComm_t, ncclDataType_t, ncclRedOp_t, ncclResult_t, ncclUniqueId};

use reduce::{DType, RedOp};
use rendezvous::{Header, Id, Link, ALL_REDUCE, BROADCAST};

const OK: ncclResult_t = ncclResult_t::ncclSuccess;

/// NCCL 2.30.0 as `NCCL_VERSION(2, 30, 0)`.
pub const VERSION: c_int = 23000;

struct Comm {
    link: Mutex<Link>,
    rank: usize,
    nranks: usize,
    device: c_int,
    seq: AtomicU64,
    /// The first failure (the communicator is unusable after it) and its text for `ncclGetLastError`.
    error: Mutex<Option<CString>>,
}

impl Comm {
    fn failed(&self) -> bool {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn fail(&self, why: String) {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            eprintln!("cuda-sim nccl: rank {}: {why}", self.rank);
            *e = Some(CString::new(why.replace('\0', " ")).unwrap_or_default());
        }
    }
}

/// One collective of one rank: `contribute` (read the send buffer, hand it to the hub) and `finish` (wait for
/// the result, write the receive buffer) run as two host functions on the rank's stream.
struct Job {
    comm: Arc<Comm>,
    kind: u8,
    send: u64,
    recv: u64,
    count: usize,
    dtype: DType,
    op: RedOp,
    root: u32,
    stream: usize,
}

impl Job {
    fn bytes(&self) -> usize {
        self.count * self.dtype.bytes()
    }

    fn contribute(&self) {
        if self.comm.failed() {
            return;
        }
        let seq = self.comm.seq.fetch_add(1, Ordering::SeqCst);
        let h =
            Header { seq, kind: self.kind, dtype: self.dtype, op: self.op, root: self.root, count: self.count as u64 };
        let mine = self.kind != BROADCAST || self.comm.rank == self.root as usize;
        let data = if mine {
            match read_dev(self.send, self.bytes()) {
                Ok(d) => d,
                Err(e) => return self.comm.fail(format!("reading the send buffer: {e:?}")),
            }
        } else {
            Vec::new()
        };
        let mut link = self.comm.link.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = link.send(&h, &data) {
            drop(link);
            self.comm.fail(e);
        }
    }

    fn finish(&self) {
        if self.comm.failed() {
            return;
        }
        let result = self.comm.link.lock().unwrap_or_else(|e| e.into_inner()).receive();
        match result {
            Ok(out) if out.len() == self.bytes() => {
                if let Err(e) = write_dev(self.recv, &out) {
                    self.comm.fail(format!("writing the receive buffer: {e:?}"));
                }
            }
            Ok(out) => self.comm.fail(format!("a result of {} bytes for {} expected", out.len(), self.bytes())),
            Err(e) => self.comm.fail(e),
        }
    }
}

fn read_dev(ptr: u64, n: usize) -> Result<Vec<u8>, drv::CUresult> {
    let mut buf = vec![0u8; n];
    if n > 0 {
        // SAFETY: a plain driver copy into a buffer of the right size.
        let r = unsafe { drv::cuMemcpyDtoH_v2(buf.as_mut_ptr() as *mut c_void, ptr, n) };
        if r != drv::CUresult::CUDA_SUCCESS {
            return Err(r);
        }
    }
    Ok(buf)
}

fn write_dev(ptr: u64, bytes: &[u8]) -> Result<(), drv::CUresult> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: a plain driver copy from a live buffer.
    let r = unsafe { drv::cuMemcpyHtoD_v2(ptr, bytes.as_ptr() as *const c_void, bytes.len()) };
    if r == drv::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

unsafe extern "C" fn run_contribute(data: *mut c_void) {
    (*(data as *const Job)).contribute();
}

unsafe extern "C" fn run_finish(data: *mut c_void) {
    // The job is released after its second half unless a graph may replay it (then it is leaked on purpose).
    let job = data as *const Job;
    (*job).finish();
    if !captured((*job).stream) {
        drop(Box::from_raw(job as *mut Job));
    }
}

fn captured(stream: usize) -> bool {
    let mut status = drv::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: a query on the caller's stream handle.
    let r = unsafe { drv::cuStreamIsCapturing(stream as drv::CUstream, &mut status) };
    r == drv::CUresult::CUDA_SUCCESS && status != drv::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
}

thread_local! {
    /// Group nesting depth and the collectives deferred to the outermost `ncclGroupEnd`.
    static GROUP: RefCell<(usize, Vec<Job>)> = const { RefCell::new((0, Vec::new())) };
}

/// Enqueue the jobs: every contribution first, then every finish, so one thread can drive several ranks.
fn launch(jobs: Vec<Job>) -> ncclResult_t {
    let comms: Vec<Arc<Comm>> = jobs.iter().map(|j| j.comm.clone()).collect();
    let ptrs: Vec<*mut Job> = jobs.into_iter().map(|j| Box::into_raw(Box::new(j))).collect();
    let mut status = OK;
    for &p in &ptrs {
        // SAFETY: p stays alive until its finish runs.
        let r = unsafe { drv::cuLaunchHostFunc((*p).stream as drv::CUstream, Some(run_contribute), p as *mut c_void) };
        if r != drv::CUresult::CUDA_SUCCESS {
            status = ncclResult_t::ncclUnhandledCudaError;
        }
    }
    for &p in &ptrs {
        // SAFETY: as above; run_finish frees the job.
        let r = unsafe { drv::cuLaunchHostFunc((*p).stream as drv::CUstream, Some(run_finish), p as *mut c_void) };
        if r != drv::CUresult::CUDA_SUCCESS {
            status = ncclResult_t::ncclUnhandledCudaError;
            // SAFETY: never enqueued, so never freed by run_finish.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    if status == OK && comms.iter().any(|c| c.failed()) {
        return ncclResult_t::ncclRemoteError;
    }
    status
}

fn submit(job: Job) -> ncclResult_t {
    if job.comm.failed() {
        return ncclResult_t::ncclRemoteError;
    }
    let deferred = GROUP.with(|g| {
        let mut g = g.borrow_mut();
        if g.0 > 0 {
            g.1.push(job);
            None
        } else {
            Some(job)
        }
    });
    match deferred {
        Some(job) => launch(vec![job]),
        None => OK,
    }
}

unsafe fn comm_ref(comm: ncclComm_t) -> Option<Arc<Comm>> {
    if comm.is_null() {
        return None;
    }
    let arc = comm as *const Comm;
    Arc::increment_strong_count(arc);
    Some(Arc::from_raw(arc))
}

#[no_mangle]
pub unsafe extern "C" fn ncclGetVersion(version: *mut c_int) -> ncclResult_t {
    if version.is_null() {
        return ncclResult_t::ncclInvalidArgument;
    }
    *version = VERSION;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn ncclGetUniqueId(unique_id: *mut ncclUniqueId) -> ncclResult_t {
    if unique_id.is_null() {
        return ncclResult_t::ncclInvalidArgument;
    }
    match rendezvous::start_hub() {
        Ok(id) => {
            let b = id.encode();
            (*unique_id).internal = b.map(|x| x as c_char);
            OK
        }
        Err(e) => {
            eprintln!("cuda-sim nccl: cannot start the rendezvous: {e}");
            ncclResult_t::ncclSystemError
        }
    }
}

fn current_device() -> c_int {
    let mut d: drv::CUdevice = 0;
    // SAFETY: an out-pointer query; without a current context the device is 0.
    if unsafe { drv::cuCtxGetDevice(&mut d) } == drv::CUresult::CUDA_SUCCESS {
        d
    } else {
        0
    }
}

fn init_rank(comm: *mut ncclComm_t, nranks: c_int, id: &ncclUniqueId, rank: c_int, device: c_int) -> ncclResult_t {
    if comm.is_null() || nranks < 1 || rank < 0 || rank >= nranks {
        return ncclResult_t::ncclInvalidArgument;
    }
    let Some(id) = Id::decode(&id.internal.map(|c| c as u8)) else {
        eprintln!("cuda-sim nccl: the unique id was not made by ncclGetUniqueId of this stand-in");
        return ncclResult_t::ncclInvalidArgument;
    };
    match Link::join(&id, rank as usize, nranks as usize) {
        Ok(link) => {
            let c = Arc::new(Comm {
                link: Mutex::new(link),
                rank: rank as usize,
                nranks: nranks as usize,
                device,
                seq: AtomicU64::new(0),
                error: Mutex::new(None),
            });
            // SAFETY: the caller's out-pointer.
            unsafe { *comm = Arc::into_raw(c) as ncclComm_t };
            OK
        }
        Err(e) => {
            eprintln!("{e}");
            ncclResult_t::ncclSystemError
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommInitRank(
    comm: *mut ncclComm_t,
    nranks: c_int,
    comm_id: ncclUniqueId,
    rank: c_int,
) -> ncclResult_t {
    init_rank(comm, nranks, &comm_id, rank, current_device())
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommInitAll(comms: *mut ncclComm_t, ndev: c_int, devlist: *const c_int) -> ncclResult_t {
    if comms.is_null() || ndev < 1 {
        return ncclResult_t::ncclInvalidArgument;
    }
    let mut id = ncclUniqueId { internal: [0; 128] };
    let r = ncclGetUniqueId(&mut id);
    if r != OK {
        return r;
    }
    for i in 0..ndev {
        let dev = if devlist.is_null() { i } else { *devlist.add(i as usize) };
        let r = init_rank(comms.add(i as usize), ndev, &id, i, dev);
        if r != OK {
            return r;
        }
    }
    OK
}

fn release(comm: ncclComm_t) -> ncclResult_t {
    if comm.is_null() {
        return ncclResult_t::ncclInvalidArgument;
    }
    // SAFETY: the pointer init_rank handed out; this is its one release.
    let c = unsafe { Arc::from_raw(comm as *const Comm) };
    if let Ok(c) = Arc::try_unwrap(c) {
        c.link.into_inner().unwrap_or_else(|e| e.into_inner()).goodbye();
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommDestroy(comm: ncclComm_t) -> ncclResult_t {
    release(comm)
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommAbort(comm: ncclComm_t) -> ncclResult_t {
    release(comm)
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommFinalize(comm: ncclComm_t) -> ncclResult_t {
    if comm.is_null() {
        ncclResult_t::ncclInvalidArgument
    } else {
        OK
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommCount(comm: ncclComm_t, count: *mut c_int) -> ncclResult_t {
    match comm_ref(comm) {
        Some(c) if !count.is_null() => {
            *count = c.nranks as c_int;
            OK
        }
        _ => ncclResult_t::ncclInvalidArgument,
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommUserRank(comm: ncclComm_t, rank: *mut c_int) -> ncclResult_t {
    match comm_ref(comm) {
        Some(c) if !rank.is_null() => {
            *rank = c.rank as c_int;
            OK
        }
        _ => ncclResult_t::ncclInvalidArgument,
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommCuDevice(comm: ncclComm_t, device: *mut c_int) -> ncclResult_t {
    match comm_ref(comm) {
        Some(c) if !device.is_null() => {
            *device = c.device;
            OK
        }
        _ => ncclResult_t::ncclInvalidArgument,
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclCommGetAsyncError(comm: ncclComm_t, async_error: *mut ncclResult_t) -> ncclResult_t {
    match comm_ref(comm) {
        Some(c) if !async_error.is_null() => {
            *async_error = if c.failed() { ncclResult_t::ncclRemoteError } else { OK };
            OK
        }
        _ => ncclResult_t::ncclInvalidArgument,
    }
}

#[no_mangle]
pub unsafe extern "C" fn ncclGetLastError(comm: ncclComm_t) -> *const c_char {
    static NONE: &std::ffi::CStr = c"";
    let Some(c) = comm_ref(comm) else { return NONE.as_ptr() };
    let e = c.error.lock().unwrap_or_else(|e| e.into_inner());
    // The string lives as long as the communicator (the first error is never replaced).
    e.as_ref().map_or(NONE.as_ptr(), |s| s.as_ptr())
}

#[no_mangle]
pub unsafe extern "C" fn ncclGetErrorString(result: ncclResult_t) -> *const c_char {
    use ncclResult_t::*;
    let s: &'static std::ffi::CStr = match result {
        ncclSuccess => c"no error",
        ncclUnhandledCudaError => c"unhandled cuda error (run with NCCL_DEBUG=INFO for details)",
        ncclSystemError => c"unhandled system error (run with NCCL_DEBUG=INFO for details)",
        ncclInternalError => c"internal error - please report this issue to the NCCL developers",
        ncclInvalidArgument => c"invalid argument (run with NCCL_DEBUG=WARN for details)",
        ncclInvalidUsage => c"invalid usage (run with NCCL_DEBUG=WARN for details)",
        ncclRemoteError => c"remote process exited or there was a network error",
        ncclInProgress => c"NCCL operation in progress",
        _ => c"unknown result code",
    };
    s.as_ptr()
}

fn types(dtype: ncclDataType_t, op: ncclRedOp_t) -> Option<(DType, RedOp)> {
    Some((DType::from_raw(dtype as u32)?, RedOp::from_raw(op as u32)?))
}

#[allow(clippy::too_many_arguments)]
unsafe fn collective(
    kind: u8,
    send: *const c_void,
    recv: *mut c_void,
    count: usize,
    dtype: ncclDataType_t,
    op: ncclRedOp_t,
    root: c_int,
    comm: ncclComm_t,
    stream: cudaStream_t,
) -> ncclResult_t {
    let Some(comm) = comm_ref(comm) else { return ncclResult_t::ncclInvalidArgument };
    let Some((dtype, op)) = types(dtype, op) else {
        comm.fail(format!("unsupported data type {dtype:?} or reduction {op:?}"));
        return ncclResult_t::ncclInvalidArgument;
    };
    if root < 0 || root as usize >= comm.nranks {
        return ncclResult_t::ncclInvalidArgument;
    }
    submit(Job {
        comm,
        kind,
        send: send as u64,
        recv: recv as u64,
        count,
        dtype,
        op,
        root: root as u32,
        stream: stream as usize,
    })
}

#[no_mangle]
pub unsafe extern "C" fn ncclAllReduce(
    sendbuff: *const c_void,
    recvbuff: *mut c_void,
    count: usize,
    datatype: ncclDataType_t,
    op: ncclRedOp_t,
    comm: ncclComm_t,
    stream: cudaStream_t,
) -> ncclResult_t {
    collective(ALL_REDUCE, sendbuff, recvbuff, count, datatype, op, 0, comm, stream)
}

#[no_mangle]
pub unsafe extern "C" fn ncclBroadcast(
    sendbuff: *const c_void,
    recvbuff: *mut c_void,
    count: usize,
    datatype: ncclDataType_t,
    root: c_int,
    comm: ncclComm_t,
    stream: cudaStream_t,
) -> ncclResult_t {
    collective(BROADCAST, sendbuff, recvbuff, count, datatype, ncclRedOp_t::ncclSum, root, comm, stream)
}

#[no_mangle]
pub unsafe extern "C" fn ncclBcast(
    buff: *mut c_void,
    count: usize,
    datatype: ncclDataType_t,
    root: c_int,
    comm: ncclComm_t,
    stream: cudaStream_t,
) -> ncclResult_t {
    ncclBroadcast(buff, buff, count, datatype, root, comm, stream)
}

#[no_mangle]
pub unsafe extern "C" fn ncclGroupStart() -> ncclResult_t {
    GROUP.with(|g| g.borrow_mut().0 += 1);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn ncclGroupEnd() -> ncclResult_t {
    let jobs = GROUP.with(|g| {
        let mut g = g.borrow_mut();
        if g.0 == 0 {
            return None;
        }
        g.0 -= 1;
        Some(if g.0 == 0 { std::mem::take(&mut g.1) } else { Vec::new() })
    });
    match jobs {
        None => ncclResult_t::ncclInvalidUsage,
        Some(jobs) if jobs.is_empty() => OK,
        Some(jobs) => launch(jobs),
    }
}
