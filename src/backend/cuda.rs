//! The CUDA side of the backend seam: a context, one stream, and the module of kernels that build.rs compiled
//! from `kernels/*.cu` and embedded in the binary. libcuda is loaded dynamically, so a machine without a driver
//! gets a clear "no CUDA device" error instead of a loader panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use half::bf16;

use super::DType;
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

/// How many CUDA devices the driver reports (`Error::NoCuda` without a driver).
pub fn device_count() -> Result<usize> {
    // SAFETY: only probes whether the driver library can be dlopen'ed.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::NoCuda("the NVIDIA driver library (libcuda.so) was not found".into()));
    }
    let n = CudaContext::device_count().map_err(|e| Error::NoCuda(format!("cuInit failed: {e:?}")))?;
    Ok(n.max(0) as usize)
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

    /// Whether `graph::capture` is recording this backend's stream (work queued now runs only at replays).
    pub fn capturing(&self) -> bool {
        self.capturing.load(Ordering::SeqCst)
    }

    /// A copy between the device and pageable host memory is no graph node: its host buffer would be read (or
    /// written) again at every replay, long after it is gone. Refused while capturing, so a capture that needs one
    /// fails cleanly. (Copies into `PinnedHost` memory, which outlives the graph, are allowed and recorded.)
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
        Ok(CudaStorage::from_slice(buf, self))
    }

    /// An uninitialised f32 buffer, for kernels that write every element (saves the memset of `zeros`).
    pub fn empty(self: &Arc<Self>, n: usize) -> Result<CudaStorage> {
        // SAFETY: callers hand the buffer to a kernel that writes all n elements before anything reads them.
        let buf = unsafe { self.stream.alloc::<f32>(n) }?;
        Ok(CudaStorage::from_slice(buf, self))
    }

    pub fn zeros(self: &Arc<Self>, n: usize) -> Result<CudaStorage> {
        let buf = self.stream.alloc_zeros::<f32>(n)?;
        Ok(CudaStorage::from_slice(buf, self))
    }

    /// An uninitialised buffer of `dtype` (see `empty`).
    pub fn empty_as(self: &Arc<Self>, dtype: DType, n: usize) -> Result<CudaStorage> {
        match dtype {
            DType::F32 => self.empty(n),
            // SAFETY: as `empty`: the caller's kernel writes all n elements before anything reads them.
            DType::Bf16 => Ok(CudaStorage::from_bf16(unsafe { self.stream.alloc::<bf16>(n) }?, self)),
        }
    }

    /// A zeroed buffer of `dtype`.
    pub fn zeros_as(self: &Arc<Self>, dtype: DType, n: usize) -> Result<CudaStorage> {
        match dtype {
            DType::F32 => self.zeros(n),
            DType::Bf16 => Ok(CudaStorage::from_bf16(self.stream.alloc_zeros::<bf16>(n)?, self)),
        }
    }

    /// A copy of an f32 slice as f32 storage (slice-level code that calls storage-level functions).
    pub fn storage_f32(self: &Arc<Self>, s: &CudaSlice<f32>) -> Result<CudaStorage> {
        Ok(CudaStorage::from_slice(self.stream.clone_dtod(s)?, self))
    }

    /// A bf16 slice widened to f32 storage (exact; one cast kernel).
    pub fn widen_bf16(self: &Arc<Self>, s: &CudaSlice<bf16>) -> Result<CudaStorage> {
        use super::kernels::{cast_bf16_to_f32, grid_1d, int};
        let mut y = self.empty(s.len())?;
        if !s.is_empty() {
            // Reads and writes s.len() elements.
            cast_bf16_to_f32(self, grid_1d(s.len()), s, y.f32_mut("widen")?, int("widen", s.len())?)?;
        }
        Ok(y)
    }

    /// An f32 slice rounded to bf16 (nearest even; one cast kernel).
    pub fn round_bf16(self: &Arc<Self>, s: &CudaSlice<f32>) -> Result<CudaSlice<bf16>> {
        use super::kernels::{cast_f32_to_bf16, grid_1d, int};
        // SAFETY: the cast kernel writes all s.len() elements.
        let mut y = unsafe { self.stream.alloc::<bf16>(s.len()) }?;
        if !s.is_empty() {
            cast_f32_to_bf16(self, grid_1d(s.len()), s, &mut y, int("round_bf16", s.len())?)?;
        }
        Ok(y)
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

/// The typed buffer behind a CUDA tensor.
pub enum CudaBuf {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<bf16>),
}

/// A device buffer (f32 or bf16) and the backend it belongs to. Kernels take the typed slice through the
/// accessors (`f32`, `bf16`, ...), which name the op when the buffer has the other dtype.
pub struct CudaStorage {
    buf: CudaBuf,
    backend: Arc<CudaBackend>,
}

impl CudaStorage {
    /// Wrap an f32 buffer allocated on `backend`'s stream.
    pub fn from_slice(buf: CudaSlice<f32>, backend: &Arc<CudaBackend>) -> CudaStorage {
        CudaStorage { buf: CudaBuf::F32(buf), backend: backend.clone() }
    }

    /// Wrap a bf16 buffer allocated on `backend`'s stream.
    pub fn from_bf16(buf: CudaSlice<bf16>, backend: &Arc<CudaBackend>) -> CudaStorage {
        CudaStorage { buf: CudaBuf::Bf16(buf), backend: backend.clone() }
    }

    pub fn dtype(&self) -> DType {
        match self.buf {
            CudaBuf::F32(_) => DType::F32,
            CudaBuf::Bf16(_) => DType::Bf16,
        }
    }

    fn wrong(&self, op: &str, want: DType) -> Error {
        Error::msg(format!("{op}: expected a {want:?} CUDA buffer, got {:?}", self.dtype()))
    }

    /// The f32 buffer, or an error naming `op` if this one holds bf16.
    pub fn f32(&self, op: &str) -> Result<&CudaSlice<f32>> {
        match &self.buf {
            CudaBuf::F32(b) => Ok(b),
            CudaBuf::Bf16(_) => Err(self.wrong(op, DType::F32)),
        }
    }

    pub fn f32_mut(&mut self, op: &str) -> Result<&mut CudaSlice<f32>> {
        match &mut self.buf {
            CudaBuf::F32(b) => Ok(b),
            CudaBuf::Bf16(_) => Err(Error::msg(format!("{op}: expected a F32 CUDA buffer, got Bf16"))),
        }
    }

    /// The bf16 buffer, or an error naming `op` if this one holds f32.
    pub fn bf16(&self, op: &str) -> Result<&CudaSlice<bf16>> {
        match &self.buf {
            CudaBuf::Bf16(b) => Ok(b),
            CudaBuf::F32(_) => Err(self.wrong(op, DType::Bf16)),
        }
    }

    pub fn bf16_mut(&mut self, op: &str) -> Result<&mut CudaSlice<bf16>> {
        match &mut self.buf {
            CudaBuf::Bf16(b) => Ok(b),
            CudaBuf::F32(_) => Err(Error::msg(format!("{op}: expected a Bf16 CUDA buffer, got F32"))),
        }
    }

    /// The f32 buffer itself, or an error naming `op`.
    pub fn into_f32(self, op: &str) -> Result<CudaSlice<f32>> {
        match self.buf {
            CudaBuf::F32(b) => Ok(b),
            CudaBuf::Bf16(_) => Err(Error::msg(format!("{op}: expected a F32 CUDA buffer, got Bf16"))),
        }
    }

    /// The bf16 buffer itself, or an error naming `op`.
    pub fn into_bf16(self, op: &str) -> Result<CudaSlice<bf16>> {
        match self.buf {
            CudaBuf::Bf16(b) => Ok(b),
            CudaBuf::F32(_) => Err(Error::msg(format!("{op}: expected a Bf16 CUDA buffer, got F32"))),
        }
    }

    pub fn buf(&self) -> &CudaBuf {
        &self.buf
    }

    pub fn len(&self) -> usize {
        match &self.buf {
            CudaBuf::F32(b) => b.len(),
            CudaBuf::Bf16(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }

    /// The values as f32 on the host (bf16 values widen exactly).
    pub fn download(&self) -> Result<Vec<f32>> {
        self.backend.no_host_copy_while_capturing("a device→host copy")?;
        Ok(match &self.buf {
            CudaBuf::F32(b) => self.backend.stream.clone_dtoh(b)?,
            CudaBuf::Bf16(b) => self.backend.stream.clone_dtoh(b)?.into_iter().map(bf16::to_f32).collect(),
        })
    }

    /// The values converted to `dtype` in a new buffer (one cast kernel; a copy when the dtype already matches).
    /// f32 → bf16 rounds to nearest even, bf16 → f32 is exact.
    pub fn cast(&self, dtype: DType) -> Result<CudaStorage> {
        use super::kernels::{cast_bf16_to_f32, cast_f32_to_bf16, grid_1d, int};
        if dtype == self.dtype() {
            return self.try_clone();
        }
        let (be, n) = (&self.backend, self.len());
        let mut y = be.empty_as(dtype, n)?;
        if n == 0 {
            return Ok(y);
        }
        let n_i = int("to_dtype", n)?;
        // Reads n elements of self, writes n of y.
        match dtype {
            DType::Bf16 => cast_f32_to_bf16(be, grid_1d(n), self.f32("to_dtype")?, y.bf16_mut("to_dtype")?, n_i)?,
            DType::F32 => cast_bf16_to_f32(be, grid_1d(n), self.bf16("to_dtype")?, y.f32_mut("to_dtype")?, n_i)?,
        }
        Ok(y)
    }

    /// A deep copy on the device (a driver error if the copy fails).
    pub fn try_clone(&self) -> Result<CudaStorage> {
        let buf = match &self.buf {
            CudaBuf::F32(b) => CudaBuf::F32(self.backend.stream.clone_dtod(b)?),
            CudaBuf::Bf16(b) => CudaBuf::Bf16(self.backend.stream.clone_dtod(b)?),
        };
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

    /// Queue a copy of `src` (its first `len` values at most) into this memory, on the backend's stream. Allowed
    /// while a CUDA graph is captured (a copy node replayed at each launch): the memory is freed only after the
    /// stream is idle, and its owner keeps it as long as the graph.
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
