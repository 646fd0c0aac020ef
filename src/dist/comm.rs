//! One NCCL communicator rank on one `CudaBackend`'s stream (cudarc's `nccl::sys`, libnccl loaded at run time):
//! the unique id, joining, in-place sum all-reduce of f32 buffers and broadcast of bytes. Errors carry NCCL's
//! own text and, where the library has one, the reason of the failure (`ncclGetLastError`: e.g. which rank was
//! lost).

use std::ffi::CStr;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut};
use cudarc::nccl::sys;

use crate::backend::cuda::CudaBackend;
use crate::{Error, Result};

/// The 128 bytes every rank needs to join the same communicator (made by one rank, sent to the others).
pub type UniqueId = [u8; 128];

fn library_present() -> Result<()> {
    // SAFETY: only probes whether libnccl can be dlopen'ed.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::NoCuda(
            "several GPUs need NCCL, but libnccl.so was not found (install NCCL, e.g. `pip install nvidia-nccl-cu13`, \
             and put its lib folder on LD_LIBRARY_PATH)"
                .into(),
        ))
    }
}

fn error_text(r: sys::ncclResult_t) -> String {
    // SAFETY: ncclGetErrorString returns a static string for any code.
    let s = unsafe { sys::ncclGetErrorString(r) };
    if s.is_null() {
        format!("{r:?}")
    } else {
        // SAFETY: a NUL-terminated static string.
        format!("{r:?} ({})", unsafe { CStr::from_ptr(s) }.to_string_lossy())
    }
}

/// A new unique id (the caller is the rank that makes it, usually rank 0).
pub fn unique_id() -> Result<UniqueId> {
    library_present()?;
    let mut id = sys::ncclUniqueId { internal: [0; 128] };
    // SAFETY: a valid out-pointer.
    let r = unsafe { sys::ncclGetUniqueId(&mut id) };
    if r != sys::ncclResult_t::ncclSuccess {
        return Err(Error::Cuda(format!("ncclGetUniqueId failed: {}", error_text(r))));
    }
    Ok(id.internal.map(|c| c as u8))
}

/// This process's rank in one communicator.
pub struct Comm {
    raw: sys::ncclComm_t,
    backend: Arc<CudaBackend>,
    rank: usize,
    world: usize,
}

// SAFETY: an NCCL communicator may be used from any thread, one call at a time; `Comm` is used by one thread at
// a time (it is moved into its replica's thread and never shared).
unsafe impl Send for Comm {}

impl Comm {
    /// Join communicator `id` as `rank` of `world` on `backend`'s device. With real NCCL this waits for every
    /// rank to join, so the ranks of one process must call it from their own threads at the same time.
    pub fn join(backend: &Arc<CudaBackend>, rank: usize, world: usize, id: &UniqueId) -> Result<Comm> {
        library_present()?;
        backend.context().bind_to_thread()?;
        let id = sys::ncclUniqueId { internal: id.map(|b| b as std::ffi::c_char) };
        let mut raw: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; world and rank fit in i32 (checked by the caller's device count).
        let r = unsafe { sys::ncclCommInitRank(&mut raw, world as i32, id, rank as i32) };
        if r != sys::ncclResult_t::ncclSuccess {
            return Err(Error::Cuda(format!(
                "ncclCommInitRank (rank {rank} of {world}, cuda:{}) failed: {}",
                backend.ordinal(),
                error_text(r)
            )));
        }
        Ok(Comm { raw, backend: backend.clone(), rank, world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }

    fn check(&self, r: sys::ncclResult_t, what: &str) -> Result<()> {
        if r == sys::ncclResult_t::ncclSuccess {
            return Ok(());
        }
        // SAFETY: the communicator is live; the string is owned by the library.
        let last = unsafe { sys::ncclGetLastError(self.raw) };
        let why = if last.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by the library.
            unsafe { CStr::from_ptr(last) }.to_string_lossy().into_owned()
        };
        let why = if why.is_empty() { String::new() } else { format!(": {why}") };
        Err(Error::Cuda(format!("{what} on rank {} of {} failed: {}{why}", self.rank, self.world, error_text(r))))
    }

    /// `buf` ← Σ over ranks of `buf`, in place, on this backend's stream.
    pub fn all_reduce_sum(&self, buf: &mut CudaSlice<f32>) -> Result<()> {
        let stream = self.backend.stream().clone();
        self.all_reduce_sum_on(buf, &stream)
    }

    /// `all_reduce_sum` on `stream` (a stream of this backend's context, e.g. one beside the compute stream).
    pub fn all_reduce_sum_on(&self, buf: &mut CudaSlice<f32>, stream: &CudaStream) -> Result<()> {
        let n = buf.len();
        let (ptr, _sync) = buf.device_ptr_mut(stream);
        // SAFETY: in place on a live buffer of n floats; the caller orders `stream` after its writers.
        let r = unsafe {
            sys::ncclAllReduce(
                ptr as *const _,
                ptr as *mut _,
                n,
                sys::ncclDataType_t::ncclFloat32,
                sys::ncclRedOp_t::ncclSum,
                self.raw,
                stream.cu_stream() as sys::cudaStream_t,
            )
        };
        self.check(r, "ncclAllReduce")
    }

    /// `buf` ← rank `root`'s `buf` (bytes), in place.
    pub fn broadcast_bytes(&self, buf: &mut CudaSlice<u8>, root: usize) -> Result<()> {
        let n = buf.len();
        let stream = self.backend.stream().clone();
        let (ptr, _sync) = buf.device_ptr_mut(&stream);
        // SAFETY: in place on a live buffer of n bytes, on the stream that owns it.
        let r = unsafe {
            sys::ncclBroadcast(
                ptr as *const _,
                ptr as *mut _,
                n,
                sys::ncclDataType_t::ncclUint8,
                root as i32,
                self.raw,
                stream.cu_stream() as sys::cudaStream_t,
            )
        };
        self.check(r, "ncclBroadcast")
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        // SAFETY: the communicator this value owns, released once.
        unsafe {
            let _ = sys::ncclCommDestroy(self.raw);
        }
    }
}
