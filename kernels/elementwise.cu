// Elementwise arithmetic used by the tensor core (gradient accumulation) and the add/mul ops. Each kernel is a
// template over the storage type T (float or bf16, dtype.cuh), instantiated as <name>_f32 and <name>_bf16;
// the arithmetic is f32 either way.
#include "dtype.cuh"

// op: 0 a + b, 1 a * b, 2 a - b.
template <typename T, int OP>
static __device__ __forceinline__ void elementwise_zip(const T* __restrict__ a, const T* __restrict__ b,
                                                       T* __restrict__ z, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = dt_f32(a[i]), q = dt_f32(b[i]);
    z[i] = dt_as<T>(OP == 0 ? p + q : OP == 1 ? p * q : p - q);
}

#define ZIP_KERNEL(name, T, OP)                                                                                  \
    extern "C" __global__ void name(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ z, int n) { \
        elementwise_zip<T, OP>(a, b, z, n);                                                                       \
    }
ZIP_KERNEL(add_f32, float, 0)
ZIP_KERNEL(add_bf16, bf16, 0)
ZIP_KERNEL(mul_f32, float, 1)
ZIP_KERNEL(mul_bf16, bf16, 1)
ZIP_KERNEL(elementwise_sub_f32, float, 2)
ZIP_KERNEL(elementwise_sub_bf16, bf16, 2)

// op: 0 y = x * s, 1 y = x + s.
template <typename T, int OP>
static __device__ __forceinline__ void elementwise_with_scalar(const T* __restrict__ x, T* __restrict__ y, float s,
                                                               int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = dt_as<T>(OP == 0 ? dt_f32(x[i]) * s : dt_f32(x[i]) + s);
}

#define SCALAR_KERNEL(name, T, OP)                                                                     \
    extern "C" __global__ void name(const T* __restrict__ x, T* __restrict__ y, float s, int n) {     \
        elementwise_with_scalar<T, OP>(x, y, s, n);                                                     \
    }
SCALAR_KERNEL(elementwise_scale_f32, float, 0)
SCALAR_KERNEL(elementwise_scale_bf16, bf16, 0)
SCALAR_KERNEL(elementwise_add_scalar_f32, float, 1)
SCALAR_KERNEL(elementwise_add_scalar_bf16, bf16, 1)

// A "bias" operand broadcast onto a full-shape one: small[(i / inner) % small_len] pairs with big[i]. Covers the
// [N,C,1,1] time embedding on [N,C,H,W] (inner = H*W, small_len = N*C), a [C,1,1] vector and a scalar. The small
// operand is f32 in both instantiations (under mixed precision the time embedding stays f32).
// op: 0 big + small, 1 big - small, 2 small - big, 3 big * small.
template <typename T>
static __device__ __forceinline__ void elementwise_bcast(const T* __restrict__ big, const float* __restrict__ small,
                                                         T* __restrict__ y, int n, int inner, int small_len, int op) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = dt_f32(big[i]);
    float q = small[(i / inner) % small_len];
    float r;
    switch (op) {
        case 0: r = p + q; break;
        case 1: r = p - q; break;
        case 2: r = q - p; break;
        default: r = p * q; break;
    }
    y[i] = dt_as<T>(r);
}

extern "C" __global__ void elementwise_bcast_f32(const float* __restrict__ big, const float* __restrict__ small,
                                                 float* __restrict__ y, int n, int inner, int small_len, int op) {
    elementwise_bcast<float>(big, small, y, n, inner, small_len, op);
}

extern "C" __global__ void elementwise_bcast_bf16(const bf16* __restrict__ big, const float* __restrict__ small,
                                                  bf16* __restrict__ y, int n, int inner, int small_len, int op) {
    elementwise_bcast<bf16>(big, small, y, n, inner, small_len, op);
}
