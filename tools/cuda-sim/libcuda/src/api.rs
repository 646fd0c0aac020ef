//! The exported driver API (`#[no_mangle]` with the exact versioned names cudarc resolves).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cuda_sim::exec::LaunchConfig;
use cudarc::driver::sys::*;

use crate::fatbin::{read_image, Image};
use crate::{attrs, driver, register_at_exit, EventRec, FuncRec, Graph, LoadedModule, Node};

const OK: CUresult = CUresult::CUDA_SUCCESS;
const PRIMARY_CTX_BASE: usize = 0x4000_0000;
const POOL_BASE: usize = 0x4800_0000;
/// `CU_STREAM_LEGACY` / `CU_STREAM_PER_THREAD` handles.
const STREAM_LEGACY: usize = 0x1;
const STREAM_PER_THREAD: usize = 0x2;

thread_local! {
    /// The thread's context stack; the top is the current context.
    static CTX_STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

macro_rules! tryr {
    ($e:expr) => {
        match $e {
            OK => {}
            err => return err,
        }
    };
}

fn check_device(dev: CUdevice) -> CUresult {
    if dev >= 0 && dev < driver().devices {
        OK
    } else {
        CUresult::CUDA_ERROR_INVALID_DEVICE
    }
}

fn sticky() -> CUresult {
    driver().sticky().unwrap_or(OK)
}

fn is_implicit_stream(s: usize) -> bool {
    s == 0 || s == STREAM_LEGACY || s == STREAM_PER_THREAD
}

/// Run `node` on `stream` now, or record it if the stream is being captured.
fn enqueue(stream: CUstream, node: Node) -> CUresult {
    let d = driver();
    {
        let mut st = d.lock();
        if let Some(e) = st.sticky {
            return e;
        }
        let sid = stream as usize;
        if !is_implicit_stream(sid) && !st.streams.contains_key(&sid) {
            return CUresult::CUDA_ERROR_INVALID_HANDLE;
        }
        if let Some(g) = st.captures.get_mut(&sid) {
            g.nodes.push(node);
            return OK;
        }
    }
    d.run_node(&node)
}

/// The device of the calling thread's current context (0 without one).
fn current_device() -> CUdevice {
    ctx_device(current()).unwrap_or(0)
}

/// The device a stream belongs to: its creating context's, or the current context's for the implicit streams.
fn stream_device(stream: CUstream) -> CUdevice {
    let sid = stream as usize;
    if is_implicit_stream(sid) {
        return current_device();
    }
    let known = driver().lock().streams.get(&sid).copied();
    known.unwrap_or_else(current_device)
}

fn capturing(stream: CUstream) -> bool {
    driver().lock().captures.contains_key(&(stream as usize))
}

// ---------------------------------------------------------------------------------------------------------------
// Initialisation, version, devices

#[no_mangle]
pub unsafe extern "C" fn cuInit(_flags: c_uint) -> CUresult {
    driver();
    register_at_exit();
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(v: *mut c_int) -> CUresult {
    if v.is_null() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    *v = 13000;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    if count.is_null() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    *count = driver().devices;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    tryr!(check_device(ordinal));
    *device = ordinal;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    if name.is_null() || len <= 0 {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    let bytes = attrs::NAME.as_bytes();
    let n = bytes.len().min(len as usize - 1);
    std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, name, n);
    *name.add(n) = 0;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(pi: *mut c_int, attrib: CUdevice_attribute, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    *pi = attrs::device_attribute(attrib as u32, dev);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    *bytes = attrs::TOTAL_MEM;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    let mut b = *b"cuda-sim-h200-\0\0";
    b[14] = dev as u8;
    for (o, i) in (*uuid).bytes.iter_mut().zip(b) {
        *o = i as c_char;
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    cuDeviceGetUuid(uuid, dev)
}

// ---------------------------------------------------------------------------------------------------------------
// Contexts

fn primary_ctx(dev: CUdevice) -> usize {
    PRIMARY_CTX_BASE + 16 * dev as usize
}

fn ctx_device(ctx: usize) -> Option<CUdevice> {
    if ctx >= PRIMARY_CTX_BASE && ctx < PRIMARY_CTX_BASE + 16 * driver().devices as usize && ctx.is_multiple_of(16) {
        return Some(((ctx - PRIMARY_CTX_BASE) / 16) as CUdevice);
    }
    driver().lock().contexts.get(&ctx).copied()
}

fn set_current(ctx: usize) {
    CTX_STACK.with(|s| {
        let mut s = s.borrow_mut();
        match s.last_mut() {
            Some(top) => *top = ctx,
            None => s.push(ctx),
        }
    });
}

fn current() -> usize {
    CTX_STACK.with(|s| s.borrow().last().copied().unwrap_or(0))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    *pctx = primary_ctx(dev) as CUcontext;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, _flags: c_uint) -> CUresult {
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(dev: CUdevice, flags: *mut c_uint, active: *mut c_int) -> CUresult {
    tryr!(check_device(dev));
    if !flags.is_null() {
        *flags = 0;
    }
    if !active.is_null() {
        *active = 1;
    }
    OK
}

fn create_ctx(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    let id = {
        let mut st = driver().lock();
        let id = st.new_id();
        st.contexts.insert(id, dev);
        id
    };
    CTX_STACK.with(|s| s.borrow_mut().push(id));
    // SAFETY: the caller's out-pointer.
    unsafe { *pctx = id as CUcontext };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    _params: *mut CUctxCreateParams,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    create_ctx(pctx, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    _params: *mut CUexecAffinityParam,
    _n: c_int,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    create_ctx(pctx, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v2(pctx: *mut CUcontext, _flags: c_uint, dev: CUdevice) -> CUresult {
    create_ctx(pctx, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    let id = ctx as usize;
    if driver().lock().contexts.remove(&id).is_none() {
        return CUresult::CUDA_ERROR_INVALID_CONTEXT;
    }
    CTX_STACK.with(|s| s.borrow_mut().retain(|&c| c != id));
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    let id = ctx as usize;
    if id != 0 && ctx_device(id).is_none() {
        return CUresult::CUDA_ERROR_INVALID_CONTEXT;
    }
    set_current(id);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    *pctx = current() as CUcontext;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    let id = ctx as usize;
    if ctx_device(id).is_none() {
        return CUresult::CUDA_ERROR_INVALID_CONTEXT;
    }
    CTX_STACK.with(|s| s.borrow_mut().push(id));
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    let top = CTX_STACK.with(|s| s.borrow_mut().pop());
    match top {
        Some(c) => {
            if !pctx.is_null() {
                *pctx = c as CUcontext;
            }
            OK
        }
        None => CUresult::CUDA_ERROR_INVALID_CONTEXT,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    match ctx_device(current()) {
        Some(d) => {
            *device = d;
            OK
        }
        None => CUresult::CUDA_ERROR_INVALID_CONTEXT,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    let d = driver();
    d.count(&d.counters.syncs);
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetFlags(_flags: c_uint) -> CUresult {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    *flags = 0;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(pvalue: *mut usize, limit: CUlimit) -> CUresult {
    *pvalue = match limit as u32 {
        0 => 1024,
        1 => 1 << 20,
        2 => 8 << 20,
        3 => 2,
        4 => 2048,
        5 => 64,
        _ => 0,
    };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetLimit(_limit: CUlimit, _value: usize) -> CUresult {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(least: *mut c_int, greatest: *mut c_int) -> CUresult {
    if !least.is_null() {
        *least = 0;
    }
    if !greatest.is_null() {
        *greatest = -5;
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut CUfunc_cache) -> CUresult {
    *config = CUfunc_cache::CU_FUNC_CACHE_PREFER_NONE;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCacheConfig(_config: CUfunc_cache) -> CUresult {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(_ctx: CUcontext, version: *mut c_uint) -> CUresult {
    *version = 13000;
    OK
}

// ---------------------------------------------------------------------------------------------------------------
// Memory

fn alloc(dptr: *mut CUdeviceptr, size: usize, dev: CUdevice, what: &str) -> CUresult {
    let d = driver();
    if let Some(e) = d.sticky() {
        return e;
    }
    if dptr.is_null() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    match d.mem.device(dev).alloc(size as u64, what) {
        Ok(a) => {
            d.count(&d.counters.allocations);
            // SAFETY: the caller's out-pointer.
            unsafe { *dptr = a };
            OK
        }
        Err(e) => {
            d.report("api", &format!("{what}: CUDA_ERROR_OUT_OF_MEMORY: {e}"));
            CUresult::CUDA_ERROR_OUT_OF_MEMORY
        }
    }
}

fn free(ptr: CUdeviceptr, what: &str) -> CUresult {
    if ptr == 0 {
        return OK;
    }
    let d = driver();
    match d.mem.free(ptr) {
        Ok(()) => {
            d.count(&d.counters.frees);
            OK
        }
        Err(e) => {
            d.report("api", &format!("{what}: CUDA_ERROR_INVALID_VALUE: {e}"));
            CUresult::CUDA_ERROR_INVALID_VALUE
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    alloc(dptr, bytesize, current_device(), "cuMemAlloc")
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    free(dptr, "cuMemFree")
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(dptr: *mut CUdeviceptr, bytesize: usize, stream: CUstream) -> CUresult {
    alloc(dptr, bytesize, stream_device(stream), "cuMemAllocAsync")
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    _pool: CUmemoryPool,
    stream: CUstream,
) -> CUresult {
    alloc(dptr, bytesize, stream_device(stream), "cuMemAllocFromPoolAsync")
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, stream: CUstream) -> CUresult {
    {
        let mut st = driver().lock();
        if let Some(g) = st.captures.get_mut(&(stream as usize)) {
            // The graph may use the memory at every replay: it goes when the graph does.
            g.deferred_frees.push(dptr);
            return OK;
        }
    }
    free(dptr, "cuMemFreeAsync")
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    let used = driver().mem.device(current_device()).live_bytes() as usize;
    if !free.is_null() {
        *free = attrs::TOTAL_MEM.saturating_sub(used);
    }
    if !total.is_null() {
        *total = attrs::TOTAL_MEM;
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    tryr!(check_device(dev));
    *pool = (POOL_BASE + 16 * dev as usize) as CUmemoryPool;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    cuDeviceGetDefaultMemPool(pool, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceSetMemPool(dev: CUdevice, _pool: CUmemoryPool) -> CUresult {
    check_device(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolSetAttribute(
    _pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    if attr == CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD && !value.is_null() {
        driver().lock().release_threshold = *(value as *const u64);
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolGetAttribute(
    _pool: CUmemoryPool,
    attr: CUmemPool_attribute,
    value: *mut c_void,
) -> CUresult {
    if value.is_null() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    use CUmemPool_attribute::*;
    let live = driver().mem.device(current_device()).live_bytes();
    match attr {
        CU_MEMPOOL_ATTR_RELEASE_THRESHOLD => *(value as *mut u64) = driver().lock().release_threshold,
        CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT
        | CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH
        | CU_MEMPOOL_ATTR_USED_MEM_CURRENT
        | CU_MEMPOOL_ATTR_USED_MEM_HIGH => *(value as *mut u64) = live,
        _ => *(value as *mut c_int) = 1,
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolTrimTo(_pool: CUmemoryPool, _keep: usize) -> CUresult {
    OK
}

fn memset(dst: CUdeviceptr, pattern: &[u8], n: usize, stream: CUstream) -> CUresult {
    enqueue(stream, Node::Memset { dst, pattern: pattern.to_vec(), count: n as u64 })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, v: u8, n: usize) -> CUresult {
    memset(dst, &[v], n, std::ptr::null_mut())
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD16_v2(dst: CUdeviceptr, v: u16, n: usize) -> CUresult {
    memset(dst, &v.to_le_bytes(), n, std::ptr::null_mut())
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32_v2(dst: CUdeviceptr, v: u32, n: usize) -> CUresult {
    memset(dst, &v.to_le_bytes(), n, std::ptr::null_mut())
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(dst: CUdeviceptr, v: u8, n: usize, s: CUstream) -> CUresult {
    memset(dst, &[v], n, s)
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD16Async(dst: CUdeviceptr, v: u16, n: usize, s: CUstream) -> CUresult {
    memset(dst, &v.to_le_bytes(), n, s)
}
#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32Async(dst: CUdeviceptr, v: u32, n: usize, s: CUstream) -> CUresult {
    memset(dst, &v.to_le_bytes(), n, s)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize) -> CUresult {
    cuMemcpyHtoDAsync_v2(dst, src, n, std::ptr::null_mut())
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> CUresult {
    dtoh(dst, src, n, std::ptr::null_mut(), true)
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> CUresult {
    cuMemcpyDtoDAsync_v2(dst, src, n, std::ptr::null_mut())
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> CUresult {
    if n == 0 {
        return sticky();
    }
    enqueue(s, Node::HtoD { dst, src: src as usize, len: n })
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    dtoh(dst, src, n, s, false)
}

/// A device-to-host copy. The host waits for it (a host sync, counted as a blocking copy) when the call is the
/// synchronous one or when `dst` is pageable memory (not from cuMemHostAlloc / cuMemHostRegister): a GPU's driver
/// returns from cuMemcpyDtoHAsync into pageable memory only once the copy is done.
fn dtoh(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream, synchronous: bool) -> CUresult {
    if n == 0 {
        return sticky();
    }
    let d = driver();
    let pinned = d.lock().is_pinned(dst as usize, n);
    if (synchronous || !pinned) && !capturing(s) {
        d.count(&d.counters.blocking_copies);
    }
    enqueue(s, Node::DtoH { dst: dst as usize, src, len: n })
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
    if n == 0 {
        return sticky();
    }
    enqueue(s, Node::DtoD { dst, src, len: n as u64 })
}

/// Between devices (the addresses say which): a DtoD copy on `s`.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyPeerAsync(
    dst: CUdeviceptr,
    _dst_ctx: CUcontext,
    src: CUdeviceptr,
    _src_ctx: CUcontext,
    n: usize,
    s: CUstream,
) -> CUresult {
    cuMemcpyDtoDAsync_v2(dst, src, n, s)
}
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyPeer(
    dst: CUdeviceptr,
    _dst_ctx: CUcontext,
    src: CUdeviceptr,
    _src_ctx: CUcontext,
    n: usize,
) -> CUresult {
    cuMemcpyDtoDAsync_v2(dst, src, n, std::ptr::null_mut())
}

/// Host memory ("pinned" is plain host memory here).
#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(pp: *mut *mut c_void, bytesize: usize, _flags: c_uint) -> CUresult {
    let mut p: *mut c_void = std::ptr::null_mut();
    if libc::posix_memalign(&mut p, 4096, bytesize.max(1)) != 0 {
        return CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    }
    driver().lock().pinned.insert(p as usize, bytesize);
    *pp = p;
    OK
}
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost_v2(pp: *mut *mut c_void, bytesize: usize) -> CUresult {
    cuMemHostAlloc(pp, bytesize, 0)
}
#[no_mangle]
pub unsafe extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    driver().lock().pinned.remove(&(p as usize));
    libc::free(p);
    OK
}
#[no_mangle]
pub unsafe extern "C" fn cuMemHostRegister_v2(p: *mut c_void, n: usize, _flags: c_uint) -> CUresult {
    driver().lock().pinned.insert(p as usize, n);
    OK
}
#[no_mangle]
pub unsafe extern "C" fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    driver().lock().pinned.remove(&(p as usize));
    OK
}

// ---------------------------------------------------------------------------------------------------------------
// Modules and functions

unsafe fn load_module(out: *mut CUmodule, image: *const c_void) -> CUresult {
    let d = driver();
    if let Some(e) = d.sticky() {
        return e;
    }
    let text = match read_image(image as *const u8) {
        Image::Ptx(t) => t,
        Image::Unsupported(why) => {
            d.report("api", &format!("cuModuleLoadData: CUDA_ERROR_INVALID_IMAGE: {why}"));
            return CUresult::CUDA_ERROR_INVALID_IMAGE;
        }
    };
    let module = match cuda_sim::parse::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            d.report("api", &format!("cuModuleLoadData: CUDA_ERROR_INVALID_PTX: {e}"));
            return CUresult::CUDA_ERROR_INVALID_PTX;
        }
    };
    let mut globals = Vec::with_capacity(module.globals.len());
    for g in &module.globals {
        let addr = match d.mem.device(current_device()).alloc(g.size, &format!("module global {}", g.name)) {
            Ok(a) => a,
            Err(_) => return CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        };
        if !g.init.is_empty() && d.mem.write(addr, &g.init).is_err() {
            return CUresult::CUDA_ERROR_INVALID_PTX;
        }
        globals.push(addr);
    }
    let mut st = d.lock();
    let id = st.new_id();
    st.modules.insert(id, Arc::new(LoadedModule { module, globals }));
    *out = id as CUmodule;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    load_module(module, image)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    _n: c_uint,
    _options: *mut CUjit_option,
    _values: *mut *mut c_void,
) -> CUresult {
    load_module(module, image)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadFatBinary(module: *mut CUmodule, image: *const c_void) -> CUresult {
    load_module(module, image)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) -> CUresult {
    let path = CStr::from_ptr(fname).to_string_lossy().into_owned();
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            bytes.push(0);
            load_module(module, bytes.as_ptr() as *const c_void)
        }
        Err(_) => CUresult::CUDA_ERROR_FILE_NOT_FOUND,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleUnload(hmod: CUmodule) -> CUresult {
    let d = driver();
    let Some(m) = d.lock().modules.remove(&(hmod as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    for &g in &m.globals {
        let _ = d.mem.free(g);
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(hfunc: *mut CUfunction, hmod: CUmodule, name: *const c_char) -> CUresult {
    let name = CStr::from_ptr(name).to_string_lossy();
    let mut st = driver().lock();
    let Some(m) = st.modules.get(&(hmod as usize)).cloned() else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let Some(k) = m.module.kernels.iter().position(|k| k.name == name) else {
        return CUresult::CUDA_ERROR_NOT_FOUND;
    };
    let max_dynamic_shared = (48 * 1024u32).saturating_sub(m.module.kernels[k].static_shared_bytes);
    let id = st.new_id();
    st.functions.insert(id, FuncRec { module: m, kernel: k, max_dynamic_shared });
    *hfunc = id as CUfunction;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetGlobal_v2(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    let name = CStr::from_ptr(name).to_string_lossy();
    let st = driver().lock();
    let Some(m) = st.modules.get(&(hmod as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let Some(i) = m.module.globals.iter().position(|g| g.name == name) else {
        return CUresult::CUDA_ERROR_NOT_FOUND;
    };
    if !dptr.is_null() {
        *dptr = m.globals[i];
    }
    if !bytes.is_null() {
        *bytes = m.module.globals[i].size as usize;
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(
    pi: *mut c_int,
    attrib: CUfunction_attribute,
    hfunc: CUfunction,
) -> CUresult {
    let st = driver().lock();
    let Some(f) = st.functions.get(&(hfunc as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let k = &f.module.module.kernels[f.kernel];
    let ptx_version = {
        let mut it = f.module.module.version.split('.').map(|s| s.trim().parse::<i32>().unwrap_or(0));
        it.next().unwrap_or(0) * 10 + it.next().unwrap_or(0)
    };
    *pi = match attrib as u32 {
        0 => k.maxntid.or(k.reqntid).map(|[x, y, z]| (x * y.max(1) * z.max(1)) as i32).unwrap_or(1024),
        1 => k.static_shared_bytes as i32,
        2 => 0,
        3 => k.local_bytes as i32,
        4 => k.num_regs.min(255) as i32,
        5 => ptx_version,
        6 => 90,
        8 => f.max_dynamic_shared as i32,
        9 => -1,
        _ => 0,
    };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncSetAttribute(hfunc: CUfunction, attrib: CUfunction_attribute, value: c_int) -> CUresult {
    let mut st = driver().lock();
    let Some(f) = st.functions.get_mut(&(hfunc as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    if attrib == CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES {
        let k = &f.module.module.kernels[f.kernel];
        let limit = 227 * 1024 - k.static_shared_bytes as i64;
        if value < 0 || value as i64 > limit {
            return CUresult::CUDA_ERROR_INVALID_VALUE;
        }
        f.max_dynamic_shared = value as u32;
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncSetCacheConfig(_f: CUfunction, _config: CUfunc_cache) -> CUresult {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuOccupancyMaxActiveBlocksPerMultiprocessor(
    num: *mut c_int,
    _f: CUfunction,
    block: c_int,
    _dyn: usize,
) -> CUresult {
    *num = if block <= 0 { 0 } else { (2048 / block).min(32) };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
    num: *mut c_int,
    f: CUfunction,
    block: c_int,
    dyn_smem: usize,
    _flags: c_uint,
) -> CUresult {
    cuOccupancyMaxActiveBlocksPerMultiprocessor(num, f, block, dyn_smem)
}

#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let d = driver();
    let (module, kernel, max_dyn) = {
        let st = d.lock();
        if let Some(e) = st.sticky {
            return e;
        }
        let Some(f) = st.functions.get(&(f as usize)) else {
            return CUresult::CUDA_ERROR_INVALID_HANDLE;
        };
        (f.module.clone(), f.kernel, f.max_dynamic_shared)
    };
    let k = &module.module.kernels[kernel];
    if !extra.is_null() {
        d.report("api", &format!("cuLaunchKernel({}): the `extra` argument is not supported by cuda-sim", k.name));
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    if [gx, gy, gz, bx, by, bz].contains(&0) {
        d.report(
            "api",
            &format!(
                "cuLaunchKernel({}): CUDA_ERROR_INVALID_VALUE: grid ({gx},{gy},{gz}) block ({bx},{by},{bz})",
                k.name
            ),
        );
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    if params.is_null() && !k.params.is_empty() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    let mut buf = vec![0u8; k.param_bytes as usize];
    for (i, p) in k.params.iter().enumerate() {
        let src = *params.add(i) as *const u8;
        if src.is_null() {
            return CUresult::CUDA_ERROR_INVALID_VALUE;
        }
        let (o, n) = (p.offset as usize, p.size as usize);
        std::ptr::copy_nonoverlapping(src, buf[o..o + n].as_mut_ptr(), n);
    }
    let cfg = LaunchConfig { grid: [gx, gy, gz], block: [bx, by, bz], dyn_shared_bytes: shared };
    let dev = stream_device(stream);
    enqueue(stream, Node::Kernel { dev, module: module.clone(), kernel, max_dyn, cfg, params: buf })
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let c = &*config;
    cuLaunchKernel(
        f,
        c.gridDimX,
        c.gridDimY,
        c.gridDimZ,
        c.blockDimX,
        c.blockDimY,
        c.blockDimZ,
        c.sharedMemBytes,
        c.hStream,
        params,
        extra,
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchHostFunc(stream: CUstream, f: CUhostFn, data: *mut c_void) -> CUresult {
    enqueue(stream, Node::Host { f, data: data as usize })
}

// ---------------------------------------------------------------------------------------------------------------
// Streams and events

fn new_stream(out: *mut CUstream) -> CUresult {
    let dev = current_device();
    let mut st = driver().lock();
    let id = st.new_id();
    st.streams.insert(id, dev);
    // SAFETY: the caller's out-pointer.
    unsafe { *out = id as CUstream };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(out: *mut CUstream, _flags: c_uint) -> CUresult {
    new_stream(out)
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(out: *mut CUstream, _flags: c_uint, _prio: c_int) -> CUresult {
    new_stream(out)
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(stream: CUstream) -> CUresult {
    let mut st = driver().lock();
    st.captures.remove(&(stream as usize));
    match st.streams.remove(&(stream as usize)) {
        Some(_) => OK,
        None => CUresult::CUDA_ERROR_INVALID_HANDLE,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamSynchronize(stream: CUstream) -> CUresult {
    let d = driver();
    if capturing(stream) {
        return CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    d.count(&d.counters.syncs);
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamQuery(stream: CUstream) -> CUresult {
    if capturing(stream) {
        return CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamWaitEvent(_stream: CUstream, _event: CUevent, _flags: c_uint) -> CUresult {
    let d = driver();
    d.count(&d.counters.event_waits);
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(out: *mut CUevent, flags: c_uint) -> CUresult {
    let mut st = driver().lock();
    let id = st.new_id();
    let timing = flags & CUevent_flags::CU_EVENT_DISABLE_TIMING as c_uint == 0;
    st.events.insert(id, EventRec { timing, at: None });
    *out = id as CUevent;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuEventRecord(event: CUevent, stream: CUstream) -> CUresult {
    let mut st = driver().lock();
    let capturing = st.captures.contains_key(&(stream as usize));
    let Some(e) = st.events.get_mut(&(event as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    if !capturing {
        e.at = Some(Instant::now());
    }
    st.sticky.unwrap_or(OK)
}

#[no_mangle]
pub unsafe extern "C" fn cuEventRecordWithFlags(event: CUevent, stream: CUstream, _flags: c_uint) -> CUresult {
    cuEventRecord(event, stream)
}

#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(event: CUevent) -> CUresult {
    let d = driver();
    if !d.lock().events.contains_key(&(event as usize)) {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    }
    d.count(&d.counters.syncs);
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(event: CUevent) -> CUresult {
    if !driver().lock().events.contains_key(&(event as usize)) {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    }
    sticky()
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(ms: *mut f32, start: CUevent, end: CUevent) -> CUresult {
    let st = driver().lock();
    let (Some(a), Some(b)) = (st.events.get(&(start as usize)), st.events.get(&(end as usize))) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    if !a.timing || !b.timing {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    }
    let (Some(ta), Some(tb)) = (a.at, b.at) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let dt = if tb >= ta { (tb - ta).as_secs_f64() } else { -(ta - tb).as_secs_f64() };
    *ms = (dt * 1e3) as f32;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(ms: *mut f32, start: CUevent, end: CUevent) -> CUresult {
    cuEventElapsedTime(ms, start, end)
}

#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(event: CUevent) -> CUresult {
    match driver().lock().events.remove(&(event as usize)) {
        Some(_) => OK,
        None => CUresult::CUDA_ERROR_INVALID_HANDLE,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Stream capture and graphs

#[no_mangle]
pub unsafe extern "C" fn cuStreamBeginCapture_v2(stream: CUstream, _mode: CUstreamCaptureMode) -> CUresult {
    let sid = stream as usize;
    let mut st = driver().lock();
    if is_implicit_stream(sid) {
        return CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    if !st.streams.contains_key(&sid) {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    }
    if st.captures.contains_key(&sid) {
        return CUresult::CUDA_ERROR_ILLEGAL_STATE;
    }
    st.captures.insert(sid, Graph::default());
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamEndCapture(stream: CUstream, graph: *mut CUgraph) -> CUresult {
    let mut st = driver().lock();
    let Some(g) = st.captures.remove(&(stream as usize)) else {
        return CUresult::CUDA_ERROR_ILLEGAL_STATE;
    };
    let id = st.new_id();
    st.graphs.insert(id, g);
    *graph = id as CUgraph;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(stream: CUstream, status: *mut CUstreamCaptureStatus) -> CUresult {
    *status = if capturing(stream) {
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
    } else {
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE
    };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    exec: *mut CUgraphExec,
    graph: CUgraph,
    _flags: c_ulonglong,
) -> CUresult {
    let mut st = driver().lock();
    let Some(g) = st.graphs.get(&(graph as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let nodes = Arc::new(g.nodes.clone());
    let id = st.new_id();
    st.execs.insert(id, nodes);
    *exec = id as CUgraphExec;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphLaunch(exec: CUgraphExec, stream: CUstream) -> CUresult {
    let d = driver();
    let nodes = {
        let mut st = d.lock();
        if let Some(e) = st.sticky {
            return e;
        }
        let Some(nodes) = st.execs.get(&(exec as usize)).cloned() else {
            return CUresult::CUDA_ERROR_INVALID_HANDLE;
        };
        if let Some(g) = st.captures.get_mut(&(stream as usize)) {
            g.nodes.extend(nodes.iter().cloned());
            return OK;
        }
        nodes
    };
    d.count(&d.counters.graph_launches);
    for n in nodes.iter() {
        tryr!(d.run_node(n));
    }
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphUpload(exec: CUgraphExec, _stream: CUstream) -> CUresult {
    if driver().lock().execs.contains_key(&(exec as usize)) {
        OK
    } else {
        CUresult::CUDA_ERROR_INVALID_HANDLE
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphExecDestroy(exec: CUgraphExec) -> CUresult {
    match driver().lock().execs.remove(&(exec as usize)) {
        Some(_) => OK,
        None => CUresult::CUDA_ERROR_INVALID_HANDLE,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphDestroy(graph: CUgraph) -> CUresult {
    let Some(g) = driver().lock().graphs.remove(&(graph as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    for p in g.deferred_frees {
        free(p, "cuMemFreeAsync (captured)");
    }
    OK
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

fn error_strings() -> &'static Mutex<HashMap<u32, (CString, CString)>> {
    static S: OnceLock<Mutex<HashMap<u32, (CString, CString)>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn error_cstr(e: CUresult, name: bool) -> *const c_char {
    let mut map = error_strings().lock().unwrap_or_else(|p| p.into_inner());
    let entry = map.entry(e as u32).or_insert_with(|| {
        let n = format!("{e:?}");
        let desc = match e {
            CUresult::CUDA_SUCCESS => "no error".to_string(),
            CUresult::CUDA_ERROR_INVALID_VALUE => "invalid argument".to_string(),
            CUresult::CUDA_ERROR_ILLEGAL_ADDRESS => "an illegal memory access was encountered".to_string(),
            CUresult::CUDA_ERROR_LAUNCH_FAILED => "unspecified launch failure".to_string(),
            CUresult::CUDA_ERROR_OUT_OF_MEMORY => "out of memory".to_string(),
            CUresult::CUDA_ERROR_INVALID_PTX => {
                "a PTX JIT compilation failed (cuda-sim could not parse the PTX)".into()
            }
            _ => n.to_lowercase().trim_start_matches("cuda_error_").replace('_', " "),
        };
        (CString::new(n).unwrap(), CString::new(desc).unwrap())
    });
    // The strings live in a never-dropped static map, so the pointers stay valid.
    if name {
        entry.0.as_ptr()
    } else {
        entry.1.as_ptr()
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(e: CUresult, out: *mut *const c_char) -> CUresult {
    *out = error_cstr(e, true);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(e: CUresult, out: *mut *const c_char) -> CUresult {
    *out = error_cstr(e, false);
    OK
}
