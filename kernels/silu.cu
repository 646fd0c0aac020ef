// SiLU forward and backward, one thread per element (see src/ops/silu.rs for the math); f32 maths on f32 or bf16
// storage (dtype.cuh).
#include "dtype.cuh"

template <typename T>
static __device__ __forceinline__ void silu_fwd(const T* __restrict__ x, T* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float a = dt_f32(x[i]);
        y[i] = dt_as<T>(a / (1.0f + __expf(-a)));
    }
}

template <typename T>
static __device__ __forceinline__ void silu_bwd(const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gx,
                                                int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float a = dt_f32(x[i]);
        float s = 1.0f / (1.0f + __expf(-a));
        gx[i] = dt_as<T>(dt_f32(gy[i]) * s * (1.0f + a * (1.0f - s)));
    }
}

extern "C" __global__ void silu_forward(const float* __restrict__ x, float* __restrict__ y, int n) {
    silu_fwd<float>(x, y, n);
}

extern "C" __global__ void silu_forward_bf16(const bf16* __restrict__ x, bf16* __restrict__ y, int n) {
    silu_fwd<bf16>(x, y, n);
}

extern "C" __global__ void silu_backward(const float* __restrict__ x, const float* __restrict__ gy,
                                         float* __restrict__ gx, int n) {
    silu_bwd<float>(x, gy, gx, n);
}

extern "C" __global__ void silu_backward_bf16(const bf16* __restrict__ x, const bf16* __restrict__ gy,
                                              bf16* __restrict__ gx, int n) {
    silu_bwd<bf16>(x, gy, gx, n);
}
