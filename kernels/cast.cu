// Tensor::to_dtype: f32 -> bf16 (round to nearest even) and bf16 -> f32 (exact), one thread per element.
#include "dtype.cuh"

extern "C" __global__ void cast_f32_to_bf16(const float* __restrict__ x, bf16* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = dt_as<bf16>(x[i]);
}

extern "C" __global__ void cast_bf16_to_f32(const bf16* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = dt_f32(x[i]);
}
