//! `libcublas.so` stand-in for cuda-sim: the GEMMs cudarc's `CudaBlas` calls, computed on the host as a reference
//! (f64 accumulation, rounded once to the output type), with cuBLAS's column-major semantics.
//!
//! It holds no simulator: device memory is reached only through the driver API of the already-loaded
//! `libcuda.so` (cudarc's loader dlopens it by name, which yields the same handle), and every GEMM runs inside a
//! host function enqueued with `cuLaunchHostFunc` on the handle's stream, so it is stream-ordered and can be
//! captured into a graph (a captured GEMM runs at every replay).

#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::ffi::{c_int, c_longlong, c_void};
use std::sync::OnceLock;
use std::time::Instant;

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasHandle_t, cublasMath_t, cublasOperation_t, cublasPointerMode_t,
    cublasStatus_t, cudaDataType, cudaStream_t,
};
use cudarc::driver::sys as drv;

const OK: cublasStatus_t = cublasStatus_t::CUBLAS_STATUS_SUCCESS;
const INVALID: cublasStatus_t = cublasStatus_t::CUBLAS_STATUS_INVALID_VALUE;

struct Handle {
    stream: usize,
    pointer_mode: cublasPointerMode_t,
}

/// Element types of GEMM operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elt {
    F32,
    F16,
    BF16,
}

impl Elt {
    fn from_cuda(t: cudaDataType) -> Option<Elt> {
        match t {
            cudaDataType::CUDA_R_32F => Some(Elt::F32),
            cudaDataType::CUDA_R_16F => Some(Elt::F16),
            cudaDataType::CUDA_R_16BF => Some(Elt::BF16),
            _ => None,
        }
    }

    fn bytes(self) -> usize {
        match self {
            Elt::F32 => 4,
            Elt::F16 | Elt::BF16 => 2,
        }
    }

    fn decode(self, b: &[u8]) -> Vec<f64> {
        match self {
            Elt::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Elt::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect(),
            Elt::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect(),
        }
    }

    fn encode(self, v: &[f64]) -> Vec<u8> {
        match self {
            Elt::F32 => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            Elt::F16 => v.iter().flat_map(|&x| half::f16::from_f64(x).to_le_bytes()).collect(),
            Elt::BF16 => v.iter().flat_map(|&x| half::bf16::from_f64(x).to_le_bytes()).collect(),
        }
    }
}

/// One column-major GEMM: C (m×n, ld ldc) = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

/// Elements spanned by a column-major rows×cols matrix with leading dimension ld.
fn extent(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (cols - 1) * ld + rows
    }
}

impl Shape {
    fn a_dims(&self) -> (usize, usize) {
        if self.ta {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }
    fn b_dims(&self) -> (usize, usize) {
        if self.tb {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }
    pub fn a_extent(&self) -> usize {
        let (r, c) = self.a_dims();
        extent(r, c, self.lda)
    }
    pub fn b_extent(&self) -> usize {
        let (r, c) = self.b_dims();
        extent(r, c, self.ldb)
    }
    pub fn c_extent(&self) -> usize {
        extent(self.m, self.n, self.ldc)
    }

    /// cuBLAS's argument checks.
    fn valid(&self) -> bool {
        let (ar, _) = self.a_dims();
        let (br, _) = self.b_dims();
        self.lda >= ar.max(1) && self.ldb >= br.max(1) && self.ldc >= self.m.max(1)
    }
}

/// The reference: `c` holds C's extent; it is only read when `beta != 0` (cuBLAS's rule: C may be
/// uninitialised then, even NaN).
pub fn gemm_host(s: &Shape, alpha: f64, a: &[f64], b: &[f64], beta: f64, c: &mut [f64]) {
    for j in 0..s.n {
        for i in 0..s.m {
            let mut acc = 0.0f64;
            for p in 0..s.k {
                let av = if s.ta { a[p + i * s.lda] } else { a[i + p * s.lda] };
                let bv = if s.tb { b[j + p * s.ldb] } else { b[p + j * s.ldb] };
                acc += av * bv;
            }
            let o = &mut c[i + j * s.ldc];
            *o = if beta == 0.0 { alpha * acc } else { alpha * acc + beta * *o };
        }
    }
}

/// Everything one (batched) GEMM needs, owned by its host function.
struct Job {
    name: &'static str,
    shape: Shape,
    alpha: f64,
    beta: f64,
    a: u64,
    b: u64,
    c: u64,
    types: [Elt; 3],
    strides: [u64; 3],
    batch: usize,
    /// Freed after its run unless it was captured into a graph (which may replay it).
    once: bool,
}

fn read_dev(ptr: u64, n: usize, t: Elt) -> Result<Vec<f64>, drv::CUresult> {
    let mut buf = vec![0u8; n * t.bytes()];
    if n > 0 {
        // SAFETY: a plain driver copy into a buffer of the right size.
        let r = unsafe { drv::cuMemcpyDtoH_v2(buf.as_mut_ptr() as *mut c_void, ptr, buf.len()) };
        if r != drv::CUresult::CUDA_SUCCESS {
            return Err(r);
        }
    }
    Ok(t.decode(&buf))
}

fn write_dev(ptr: u64, v: &[f64], t: Elt) -> Result<(), drv::CUresult> {
    if v.is_empty() {
        return Ok(());
    }
    let bytes = t.encode(v);
    // SAFETY: a plain driver copy from a live buffer.
    let r = unsafe { drv::cuMemcpyHtoD_v2(ptr, bytes.as_ptr() as *const c_void, bytes.len()) };
    if r == drv::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

impl Job {
    fn run(&self) -> Result<(), drv::CUresult> {
        let s = &self.shape;
        let [ta, tb, tc] = self.types;
        for bi in 0..self.batch as u64 {
            let a = read_dev(self.a + bi * self.strides[0] * ta.bytes() as u64, s.a_extent(), ta)?;
            let b = read_dev(self.b + bi * self.strides[1] * tb.bytes() as u64, s.b_extent(), tb)?;
            let cptr = self.c + bi * self.strides[2] * tc.bytes() as u64;
            let ce = s.c_extent();
            if self.beta != 0.0 || s.ldc == s.m {
                let mut c = if self.beta != 0.0 { read_dev(cptr, ce, tc)? } else { vec![0.0; ce] };
                gemm_host(s, self.alpha, &a, &b, self.beta, &mut c);
                write_dev(cptr, &c, tc)?;
            } else {
                // beta = 0 with gaps between columns: C is not read, so write only its m×n elements.
                let mut c = vec![0.0; ce];
                gemm_host(s, self.alpha, &a, &b, 0.0, &mut c);
                for j in 0..s.n {
                    let col = &c[j * s.ldc..j * s.ldc + s.m];
                    write_dev(cptr + (j * s.ldc * tc.bytes()) as u64, col, tc)?;
                }
            }
        }
        Ok(())
    }
}

type RecordFn = unsafe extern "C" fn(*const std::ffi::c_char, u64, f64);

/// `cudaSimRecordCublas` of the loaded libcuda.so stand-in (absent under a real driver).
fn recorder() -> Option<RecordFn> {
    static R: OnceLock<usize> = OnceLock::new();
    let p = *R.get_or_init(|| {
        // SAFETY: looks a symbol up in an already-loaded library (RTLD_NOLOAD loads nothing).
        unsafe {
            let h = libc::dlopen(c"libcuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if h.is_null() {
                return 0;
            }
            libc::dlsym(h, c"cudaSimRecordCublas".as_ptr()) as usize
        }
    });
    // SAFETY: the symbol has this signature in the stand-in.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, RecordFn>(p) })
}

unsafe extern "C" fn run_job(data: *mut c_void) {
    let job = &*(data as *const Job);
    let t0 = Instant::now();
    if let Err(e) = job.run() {
        eprintln!("========= cuda-sim cublas: {} failed in a driver copy: {e:?}", job.name);
    }
    if let Some(rec) = recorder() {
        let s = &job.shape;
        let flops = 2 * (s.m * s.n * s.k * job.batch) as u64;
        let name = std::ffi::CString::new(job.name).unwrap();
        rec(name.as_ptr(), flops, t0.elapsed().as_secs_f64());
    }
    if job.once {
        drop(Box::from_raw(data as *mut Job));
    }
}

unsafe fn scalar(h: &Handle, p: *const c_void, t: Elt) -> Result<f64, cublasStatus_t> {
    if p.is_null() {
        return Err(INVALID);
    }
    if h.pointer_mode == cublasPointerMode_t::CUBLAS_POINTER_MODE_DEVICE {
        return read_dev(p as u64, 1, t).map(|v| v[0]).map_err(|_| cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED);
    }
    Ok(match t {
        Elt::F32 => *(p as *const f32) as f64,
        Elt::F16 => (*(p as *const half::f16)).to_f64(),
        Elt::BF16 => (*(p as *const half::bf16)).to_f64(),
    })
}

fn op(o: cublasOperation_t) -> Result<bool, cublasStatus_t> {
    match o {
        cublasOperation_t::CUBLAS_OP_N => Ok(false),
        cublasOperation_t::CUBLAS_OP_T | cublasOperation_t::CUBLAS_OP_C => Ok(true),
        #[allow(unreachable_patterns)]
        _ => Err(INVALID),
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn submit(
    name: &'static str,
    handle: cublasHandle_t,
    transa: cublasOperation_t,
    transb: cublasOperation_t,
    m: i64,
    n: i64,
    k: i64,
    alpha: *const c_void,
    a: *const c_void,
    lda: i64,
    b: *const c_void,
    ldb: i64,
    beta: *const c_void,
    c: *mut c_void,
    ldc: i64,
    types: [Elt; 3],
    strides: [i64; 3],
    batch: i64,
) -> cublasStatus_t {
    let Some(h) = (handle as *const Handle).as_ref() else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    let (ta, tb) = match (op(transa), op(transb)) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return INVALID,
    };
    if [m, n, k, batch].iter().any(|&v| v < 0) || [lda, ldb, ldc].iter().any(|&v| v <= 0) {
        return INVALID;
    }
    let shape = Shape {
        ta,
        tb,
        m: m as usize,
        n: n as usize,
        k: k as usize,
        lda: lda as usize,
        ldb: ldb as usize,
        ldc: ldc as usize,
    };
    if !shape.valid() || strides.iter().any(|&s| s < 0) {
        return INVALID;
    }
    if m == 0 || n == 0 || batch == 0 {
        return OK;
    }
    // Scalars are f32 for every 32F compute type (the only kind supported here).
    let (alpha, beta) = match (scalar(h, alpha, Elt::F32), scalar(h, beta, Elt::F32)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let stream = h.stream as drv::CUstream;
    let mut status = drv::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    let captured = drv::cuStreamIsCapturing(stream, &mut status) == drv::CUresult::CUDA_SUCCESS
        && status != drv::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    let job = Box::new(Job {
        name,
        shape,
        alpha,
        beta,
        a: a as u64,
        b: b as u64,
        c: c as u64,
        types,
        strides: strides.map(|s| s as u64),
        batch: batch as usize,
        once: !captured,
    });
    let data = Box::into_raw(job) as *mut c_void;
    if drv::cuLaunchHostFunc(stream, Some(run_job), data) != drv::CUresult::CUDA_SUCCESS {
        drop(Box::from_raw(data as *mut Job));
        return cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED;
    }
    OK
}

fn compute_ok(c: cublasComputeType_t) -> bool {
    use cublasComputeType_t::*;
    matches!(
        c,
        CUBLAS_COMPUTE_32F
            | CUBLAS_COMPUTE_32F_PEDANTIC
            | CUBLAS_COMPUTE_32F_FAST_16F
            | CUBLAS_COMPUTE_32F_FAST_16BF
            | CUBLAS_COMPUTE_32F_FAST_TF32
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Exported API

#[no_mangle]
pub unsafe extern "C" fn cublasCreate_v2(handle: *mut cublasHandle_t) -> cublasStatus_t {
    if handle.is_null() {
        return INVALID;
    }
    let h = Box::new(Handle { stream: 0, pointer_mode: cublasPointerMode_t::CUBLAS_POINTER_MODE_HOST });
    *handle = Box::into_raw(h) as cublasHandle_t;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasDestroy_v2(handle: cublasHandle_t) -> cublasStatus_t {
    if handle.is_null() {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    }
    drop(Box::from_raw(handle as *mut Handle));
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasSetStream_v2(handle: cublasHandle_t, stream: cudaStream_t) -> cublasStatus_t {
    let Some(h) = (handle as *mut Handle).as_mut() else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    h.stream = stream as usize;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasGetStream_v2(handle: cublasHandle_t, stream: *mut cudaStream_t) -> cublasStatus_t {
    let Some(h) = (handle as *const Handle).as_ref() else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    *stream = h.stream as cudaStream_t;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasSetPointerMode_v2(handle: cublasHandle_t, mode: cublasPointerMode_t) -> cublasStatus_t {
    let Some(h) = (handle as *mut Handle).as_mut() else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    h.pointer_mode = mode;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasGetPointerMode_v2(
    handle: cublasHandle_t,
    mode: *mut cublasPointerMode_t,
) -> cublasStatus_t {
    let Some(h) = (handle as *const Handle).as_ref() else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    *mode = h.pointer_mode;
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasSetMathMode(_handle: cublasHandle_t, _mode: cublasMath_t) -> cublasStatus_t {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasSetWorkspace_v2(
    _handle: cublasHandle_t,
    _ws: *mut c_void,
    _size: usize,
) -> cublasStatus_t {
    OK
}

#[no_mangle]
pub unsafe extern "C" fn cublasSgemm_v2(
    handle: cublasHandle_t,
    transa: cublasOperation_t,
    transb: cublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: *const f32,
    c: *mut f32,
    ldc: c_int,
) -> cublasStatus_t {
    submit(
        "cublasSgemm_v2",
        handle,
        transa,
        transb,
        m as i64,
        n as i64,
        k as i64,
        alpha as _,
        a as _,
        lda as i64,
        b as _,
        ldb as i64,
        beta as _,
        c as _,
        ldc as i64,
        [Elt::F32; 3],
        [0; 3],
        1,
    )
}

#[no_mangle]
pub unsafe extern "C" fn cublasSgemmStridedBatched(
    handle: cublasHandle_t,
    transa: cublasOperation_t,
    transb: cublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const f32,
    a: *const f32,
    lda: c_int,
    stride_a: c_longlong,
    b: *const f32,
    ldb: c_int,
    stride_b: c_longlong,
    beta: *const f32,
    c: *mut f32,
    ldc: c_int,
    stride_c: c_longlong,
    batch: c_int,
) -> cublasStatus_t {
    submit(
        "cublasSgemmStridedBatched",
        handle,
        transa,
        transb,
        m as i64,
        n as i64,
        k as i64,
        alpha as _,
        a as _,
        lda as i64,
        b as _,
        ldb as i64,
        beta as _,
        c as _,
        ldc as i64,
        [Elt::F32; 3],
        [stride_a, stride_b, stride_c],
        batch as i64,
    )
}

fn ex_types(at: cudaDataType, bt: cudaDataType, ct: cudaDataType, compute: cublasComputeType_t) -> Option<[Elt; 3]> {
    if !compute_ok(compute) {
        return None;
    }
    Some([Elt::from_cuda(at)?, Elt::from_cuda(bt)?, Elt::from_cuda(ct)?])
}

#[no_mangle]
pub unsafe extern "C" fn cublasGemmEx(
    handle: cublasHandle_t,
    transa: cublasOperation_t,
    transb: cublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    a: *const c_void,
    atype: cudaDataType,
    lda: c_int,
    b: *const c_void,
    btype: cudaDataType,
    ldb: c_int,
    beta: *const c_void,
    c: *mut c_void,
    ctype: cudaDataType,
    ldc: c_int,
    compute: cublasComputeType_t,
    _algo: cublasGemmAlgo_t,
) -> cublasStatus_t {
    let Some(types) = ex_types(atype, btype, ctype, compute) else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED;
    };
    submit(
        "cublasGemmEx",
        handle,
        transa,
        transb,
        m as i64,
        n as i64,
        k as i64,
        alpha,
        a,
        lda as i64,
        b,
        ldb as i64,
        beta,
        c,
        ldc as i64,
        types,
        [0; 3],
        1,
    )
}

#[no_mangle]
pub unsafe extern "C" fn cublasGemmStridedBatchedEx(
    handle: cublasHandle_t,
    transa: cublasOperation_t,
    transb: cublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    a: *const c_void,
    atype: cudaDataType,
    lda: c_int,
    stride_a: c_longlong,
    b: *const c_void,
    btype: cudaDataType,
    ldb: c_int,
    stride_b: c_longlong,
    beta: *const c_void,
    c: *mut c_void,
    ctype: cudaDataType,
    ldc: c_int,
    stride_c: c_longlong,
    batch: c_int,
    compute: cublasComputeType_t,
    _algo: cublasGemmAlgo_t,
) -> cublasStatus_t {
    let Some(types) = ex_types(atype, btype, ctype, compute) else {
        return cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED;
    };
    submit(
        "cublasGemmStridedBatchedEx",
        handle,
        transa,
        transb,
        m as i64,
        n as i64,
        k as i64,
        alpha,
        a,
        lda as i64,
        b,
        ldb as i64,
        beta,
        c,
        ldc as i64,
        types,
        [stride_a, stride_b, stride_c],
        batch as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency).
    fn rand_vec(seed: &mut u64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// Row-major reference: dense op(A) (m×k) and op(B) (k×n) built element by element from the column-major
    /// storage, then C[i][j] = alpha·Σ op(A)[i][p]·op(B)[p][j] + beta·C[i][j].
    fn reference(s: &Shape, alpha: f64, a: &[f64], b: &[f64], beta: f64, c: &[f64]) -> Vec<Vec<f64>> {
        // Column-major element (r, c) of a matrix with leading dimension ld is at r + c·ld.
        let at = |r: usize, col: usize| a[r + col * s.lda];
        let bt = |r: usize, col: usize| b[r + col * s.ldb];
        let opa: Vec<Vec<f64>> =
            (0..s.m).map(|i| (0..s.k).map(|p| if s.ta { at(p, i) } else { at(i, p) }).collect()).collect();
        let opb: Vec<Vec<f64>> =
            (0..s.k).map(|p| (0..s.n).map(|j| if s.tb { bt(j, p) } else { bt(p, j) }).collect()).collect();
        (0..s.m)
            .map(|i| {
                (0..s.n)
                    .map(|j| {
                        let dot: f64 = (0..s.k).map(|p| opa[i][p] * opb[p][j]).sum();
                        alpha * dot + if beta == 0.0 { 0.0 } else { beta * c[i + j * s.ldc] }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn column_major_semantics_for_every_transpose_and_leading_dimension() {
        let mut seed = 7u64;
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (m, n, k, pad) in [(3, 5, 4, 2), (1, 7, 3, 0), (6, 2, 1, 3), (4, 4, 0, 1)] {
                let (ar, _) = if ta { (k, m) } else { (m, k) };
                let (br, _) = if tb { (n, k) } else { (k, n) };
                let s = Shape { ta, tb, m, n, k, lda: ar.max(1) + pad, ldb: br.max(1) + pad + 1, ldc: m + pad };
                let a = rand_vec(&mut seed, s.a_extent());
                let b = rand_vec(&mut seed, s.b_extent());
                for beta in [0.0, 0.75] {
                    let mut c = rand_vec(&mut seed, s.c_extent());
                    if beta == 0.0 {
                        // beta = 0 must not read C: NaN there must not leak into the result.
                        c.iter_mut().for_each(|x| *x = f64::NAN);
                    }
                    let want = reference(&s, 1.25, &a, &b, beta, &c);
                    let before = c.clone();
                    gemm_host(&s, 1.25, &a, &b, beta, &mut c);
                    for (i, row) in want.iter().enumerate() {
                        for (j, w) in row.iter().enumerate() {
                            let got = c[i + j * s.ldc];
                            assert!((got - w).abs() < 1e-12, "{s:?} beta {beta}: C({i},{j}) = {got}, want {w}");
                        }
                    }
                    // Elements between columns (rows m..ldc) are untouched.
                    for j in 0..n {
                        for i in m..s.ldc {
                            if let (Some(x), Some(y)) = (c.get(i + j * s.ldc), before.get(i + j * s.ldc)) {
                                assert!(x.to_bits() == y.to_bits(), "gap element ({i},{j}) changed");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn extents_and_argument_checks() {
        let s = Shape { ta: true, tb: false, m: 3, n: 2, k: 4, lda: 4, ldb: 5, ldc: 3 };
        assert!(s.valid());
        assert_eq!((s.a_extent(), s.b_extent(), s.c_extent()), (2 * 4 + 4, 5 + 4, 3 + 3));
        assert!(!Shape { lda: 3, ..s }.valid(), "op(A) = Aᵀ is stored k×m: lda ≥ k");
        assert!(!Shape { ldc: 2, ..s }.valid());
    }

    #[test]
    fn element_types_round_trip() {
        let v = [1.5, -2.25, 3.0e-3];
        for t in [Elt::F32, Elt::F16, Elt::BF16] {
            let back = t.decode(&t.encode(&v));
            for (x, y) in v.iter().zip(&back) {
                assert!((x - y).abs() <= x.abs() * 1e-2, "{t:?}: {x} vs {y}");
            }
        }
    }
}
