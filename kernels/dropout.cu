// Inverted dropout (see src/ops/dropout.rs): element e is kept iff its Philox uniform u_e > p, and kept values are
// x / (1 - p). The mask is regenerated from (seed, offset) in the backward, so nothing is stored. The offset is
// rng_offset(counter, offset): read from the device when the stream is counted there (a captured training step).
#include "rng.cu"
#include "dtype.cuh"

template <typename T>
static __device__ __forceinline__ T dropout_keep(unsigned int word, T x, float p, float keep) {
    return dt_as<T>(rng_uniform(word) > p ? dt_f32(x) / keep : 0.0f);
}

// One thread per block of 4 elements (one Philox call gives the 4 uniforms of elements 4i..4i+3).
template <typename T>
static __device__ __forceinline__ void dropout_apply(const T* __restrict__ x, T* __restrict__ y, int n,
                                                     float p, unsigned long long seed, unsigned long long offset,
                                                     const unsigned long long* __restrict__ counter) {
    long long block = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long e = block * 4;
    if (e >= n) return;
    uint4 w = rng_block(seed, rng_offset(counter, offset), (unsigned long long)block);
    float keep = 1.0f - p;
    y[e] = dropout_keep(w.x, x[e], p, keep);
    if (e + 1 < n) y[e + 1] = dropout_keep(w.y, x[e + 1], p, keep);
    if (e + 2 < n) y[e + 2] = dropout_keep(w.z, x[e + 2], p, keep);
    if (e + 3 < n) y[e + 3] = dropout_keep(w.w, x[e + 3], p, keep);
}

extern "C" __global__ void dropout_forward(const float* __restrict__ x, float* __restrict__ y, int n, float p,
                                           unsigned long long seed, unsigned long long offset,
                                           const unsigned long long* __restrict__ counter) {
    dropout_apply(x, y, n, p, seed, offset, counter);
}

// dx = dy * mask / (1 - p): the forward's mask, regenerated.
extern "C" __global__ void dropout_backward(const float* __restrict__ gy, float* __restrict__ gx, int n, float p,
                                            unsigned long long seed, unsigned long long offset,
                                            const unsigned long long* __restrict__ counter) {
    dropout_apply(gy, gx, n, p, seed, offset, counter);
}

extern "C" __global__ void dropout_forward_bf16(const bf16* __restrict__ x, bf16* __restrict__ y, int n, float p,
                                                unsigned long long seed, unsigned long long offset,
                                           const unsigned long long* __restrict__ counter) {
    dropout_apply(x, y, n, p, seed, offset, counter);
}

extern "C" __global__ void dropout_backward_bf16(const bf16* __restrict__ gy, bf16* __restrict__ gx, int n, float p,
                                                 unsigned long long seed, unsigned long long offset,
                                            const unsigned long long* __restrict__ counter) {
    dropout_apply(gy, gx, n, p, seed, offset, counter);
}
