//! The CUDA side of the backend seam: a context, one stream, and the module of kernels that build.rs compiled
//! from `kernels/*.cu` and embedded in the binary. libcuda is loaded dynamically, so a machine without a driver
//! gets a clear "no CUDA device" error instead of a loader panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};

use crate::{Error, Result};

/// The fatbin build.rs made from `kernels/*.cu` (empty when the build had no nvcc).
static KERNELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));

/// The `ptxas -v` report of the embedded kernels, one line per kernel and arch.
pub const PTXAS_REPORT: &str = include_str!(concat!(env!("OUT_DIR"), "/ptxas.txt"));

/// The embedded fatbin (empty without nvcc at build time).
pub fn fatbin() -> &'static [u8] {
    KERNELS
}

/// Whether this binary carries compiled CUDA kernels.
pub fn kernels_built() -> bool {
    !KERNELS.is_empty()
}

pub struct CudaBackend {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    sm_count: usize,
    /// The device's name as the driver reports it.
    name: String,
    /// cuBLAS on this backend's stream, created on first use; `Err` when libcublas cannot be loaded.
    blas: OnceLock<std::result::Result<CudaBlas, String>>,
    /// Set while `graph::capture` records this backend's stream: host↔device copies are refused then.
    pub(crate) capturing: AtomicBool,
}

impl CudaBackend {
    /// Open GPU `ordinal`. Every way this can fail (no driver library, no device, a binary built without kernels)
    /// returns `Error::NoCuda` with the reason.
    pub fn open(ordinal: usize) -> Result<Arc<CudaBackend>> {
        if !kernels_built() {
            return Err(Error::NoCuda(
                "this binary was built without CUDA kernels (nvcc was not found at build time; set NVCC or CUDA_HOME and rebuild)"
                    .into(),
            ));
        }
        // SAFETY: only probes whether the driver library can be dlopen'ed.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::NoCuda("the NVIDIA driver library (libcuda.so) was not found".into()));
        }
        let count = CudaContext::device_count().map_err(|e| Error::NoCuda(format!("cuInit failed: {e:?}")))?;
        if ordinal >= count as usize {
            return Err(Error::NoCuda(format!("device cuda:{ordinal} requested, {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| Error::NoCuda(format!("{e:?}")))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(KERNELS.to_vec()))
            .map_err(|e| Error::NoCuda(format!("the embedded kernels do not load on this driver: {e:?}")))?;
        // SAFETY: every buffer of this backend is used on its one stream (cuBLAS included), so cudarc's per-buffer
        // events, which order work across streams, only cost two event records per allocation.
        unsafe { ctx.disable_event_tracking() };
        // A stream of our own, not the legacy default stream: only such a stream can be captured into a CUDA graph.
        let stream = ctx.new_stream().map_err(|e| Error::NoCuda(format!("cuStreamCreate failed: {e:?}")))?;
        keep_pool_memory(&ctx);
        let name = ctx.name().unwrap_or_else(|_| "unknown CUDA device".into());
        let sm_count = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).unwrap_or(1).max(1);
        Ok(Arc::new(CudaBackend {
            ordinal,
            ctx,
            stream,
            module,
            functions: Mutex::new(HashMap::new()),
            sm_count: sm_count as usize,
            name,
            blas: OnceLock::new(),
            capturing: AtomicBool::new(false),
        }))
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device's name, e.g. "NVIDIA H200".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this "GPU" is the PTX simulator of tools/cuda-sim (it names itself so), where every kernel runs on
    /// the CPU thousands of times slower: callers pick smaller work.
    pub fn is_simulated(&self) -> bool {
        self.name.contains("cuda-sim")
    }

    /// Streaming multiprocessors on this device (grid sizing for split reductions).
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    /// The cuBLAS handle (created on first use, bound to this backend's stream), or why there is none: cudarc
    /// loads libcublas at run time and would panic without it, so its presence is checked first.
    pub fn blas(&self) -> Result<&CudaBlas> {
        let b = self.blas.get_or_init(|| {
            // SAFETY: only probes whether the library can be dlopen'ed.
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err("libcublas.so was not found (put its directory on LD_LIBRARY_PATH)".into());
            }
            CudaBlas::new(self.stream.clone()).map_err(|e| format!("cublasCreate failed: {e:?}"))
        });
        b.as_ref().map_err(|e| Error::Cuda(e.clone()))
    }

    /// Look a kernel up by its `extern "C"` name (cached).
    pub fn function(&self, name: &'static str) -> Result<CudaFunction> {
        let mut map = self.functions.lock().expect("kernel cache poisoned");
        if let Some(f) = map.get(name) {
            return Ok(f.clone());
        }
        let f = self
            .module
            .load_function(name)
            .map_err(|e| Error::Cuda(format!("kernel {name} not in the embedded module: {e:?}")))?;
        map.insert(name, f.clone());
        Ok(f)
    }

    /// A host→device or device→host copy is no graph node: its host buffer would be read (or written) again at
    /// every replay, long after it is gone. Refused while capturing, so a capture that needs one fails cleanly.
    pub(crate) fn no_host_copy_while_capturing(&self, what: &str) -> Result<()> {
        if self.capturing.load(Ordering::SeqCst) {
            return Err(Error::Cuda(format!(
                "{what} while capturing a CUDA graph (its host buffer is not replayable)"
            )));
        }
        Ok(())
    }

    pub fn upload(self: &Arc<Self>, data: &[f32]) -> Result<CudaStorage> {
        self.no_host_copy_while_capturing("a host→device copy")?;
        let buf = self.stream.clone_htod(data)?;
        Ok(CudaStorage { buf, backend: self.clone() })
    }

    /// An uninitialised buffer, for kernels that write every element (saves the memset of `zeros`).
    pub fn empty(self: &Arc<Self>, n: usize) -> Result<CudaStorage> {
        // SAFETY: callers hand the buffer to a kernel that writes all n elements before anything reads them.
        let buf = unsafe { self.stream.alloc::<f32>(n) }?;
        Ok(CudaStorage { buf, backend: self.clone() })
    }

    pub fn zeros(self: &Arc<Self>, n: usize) -> Result<CudaStorage> {
        let buf = self.stream.alloc_zeros::<f32>(n)?;
        Ok(CudaStorage { buf, backend: self.clone() })
    }

    pub fn synchronize(&self) -> Result<()> {
        Ok(self.stream.synchronize()?)
    }
}

/// Buffers come from the device's default stream-ordered memory pool (cuMemAllocAsync). Its release threshold
/// defaults to 0, which hands freed memory back to the driver at every synchronisation; raising it to "never"
/// makes the pool a cache, so a training step's allocations are served from memory the previous step freed.
/// Best effort: without pool support (or on failure) allocation still works, only slower.
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys;
    // SAFETY: plain driver calls on this context's device with valid out-pointers.
    unsafe {
        if ctx.bind_to_thread().is_err() {
            return;
        }
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) != sys::CUresult::CUDA_SUCCESS {
            return;
        }
        let mut threshold = u64::MAX;
        let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
        let _ = sys::cuMemPoolSetAttribute(pool, attr, (&mut threshold as *mut u64).cast());
    }
}

/// A device buffer of f32 and the backend it belongs to.
pub struct CudaStorage {
    pub buf: CudaSlice<f32>,
    backend: Arc<CudaBackend>,
}

impl CudaStorage {
    /// Wrap a buffer allocated on `backend`'s stream.
    pub fn from_slice(buf: CudaSlice<f32>, backend: &Arc<CudaBackend>) -> CudaStorage {
        CudaStorage { buf, backend: backend.clone() }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }

    pub fn download(&self) -> Result<Vec<f32>> {
        self.backend.no_host_copy_while_capturing("a device→host copy")?;
        Ok(self.backend.stream.clone_dtoh(&self.buf)?)
    }

    /// A deep copy on the device (a driver error if the copy fails).
    pub fn try_clone(&self) -> Result<CudaStorage> {
        let buf = self.backend.stream.clone_dtod(&self.buf)?;
        Ok(CudaStorage { buf, backend: self.backend.clone() })
    }
}

/// Page-locked host memory of f64 that device buffers are copied into asynchronously: queuing the copy does not
/// wait for the device (a copy into pageable memory would), so a value can travel back every step and be read
/// only now and then, after a stream synchronisation.
pub struct PinnedHost {
    ptr: *mut f64,
    len: usize,
    stream: Arc<CudaStream>,
}

// SAFETY: the memory is owned by this value alone; the driver only writes it through copies queued by `copy_from`.
unsafe impl Send for PinnedHost {}

impl PinnedHost {
    /// `len` zeros.
    pub fn new(be: &CudaBackend, len: usize) -> Result<PinnedHost> {
        be.ctx.bind_to_thread()?;
        // SAFETY: a plain allocation of len·8 bytes, zeroed before anyone reads it.
        let ptr = unsafe { cudarc::driver::result::malloc_host(len.max(1) * 8, 0) }? as *mut f64;
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(PinnedHost { ptr, len, stream: be.stream.clone() })
    }

    /// Queue a copy of `src` (its first `len` values at most) into this memory, on the backend's stream.
    pub fn copy_from(&mut self, src: &CudaSlice<f64>) -> Result<()> {
        use cudarc::driver::DevicePtr;
        let n = src.len().min(self.len);
        let (from, _record) = src.device_ptr(&self.stream);
        // SAFETY: n values fit both sides; the memory is page-locked, so the driver copies asynchronously and
        // `read` synchronises first.
        unsafe {
            let to = std::slice::from_raw_parts_mut(self.ptr, n);
            cudarc::driver::result::memcpy_dtoh_async(to, from, self.stream.cu_stream())?;
        }
        Ok(())
    }

    /// Wait for the stream (every queued copy included: the one host sync), then the values.
    pub fn read(&self) -> Result<Vec<f64>> {
        self.stream.synchronize()?;
        // SAFETY: len initialised values (zeroed at allocation), no copy in flight after the synchronisation.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec())
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        // A queued copy must land before the memory goes.
        let _ = self.stream.synchronize();
        // SAFETY: allocated by malloc_host in `new`, freed once.
        let _ = unsafe { cudarc::driver::result::free_host(self.ptr.cast()) };
    }
}
