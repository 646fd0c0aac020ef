// Inverted dropout (see src/ops/dropout/mod.rs): element e is kept iff its Philox uniform u_e > p, and kept values are
// x / (1 - p). The mask is regenerated from (seed, offset) in the backward, so nothing is stored. The offset is
// rng_offset(counter, offset): read from the device when the stream is counted there (a captured training step).
#include "rng.cu"
#include "dtype.cuh"

template <typename T>
static __device__ __forceinline__ T dropout_keep(unsigned int word, T x, float p, float keep) {
    return dt_as<T>(rng_uniform(word) > p ? dt_f32(x) / keep : 0.0f);
}

// Element e of x is element first + e of the draw (a data-parallel replica's slice of the global batch). One
// thread per 4-element Philox block of the draw (one call gives the 4 uniforms of draw elements 4b..4b+3), from
// the block holding element `first` on; the blocks at either end may hold elements outside x.
template <typename T>
static __device__ __forceinline__ void dropout_one(const T* __restrict__ x, T* __restrict__ y, long long e, int n,
                                                   unsigned int word, float p, float keep) {
    if (e >= 0 && e < n) y[e] = dropout_keep(word, x[e], p, keep);
}

template <typename T>
static __device__ __forceinline__ void dropout_apply(const T* __restrict__ x, T* __restrict__ y, int n,
                                                     float p, unsigned long long seed, unsigned long long offset,
                                                     unsigned long long first,
                                                     const unsigned long long* __restrict__ counter) {
    unsigned long long block = first / 4 + (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long e = (long long)(block * 4 - first);  // x's index of the block's element 0 (-3..-1 at the start)
    if (e >= n) return;
    uint4 w = rng_block(seed, rng_offset(counter, offset), block);
    float keep = 1.0f - p;
    dropout_one(x, y, e, n, w.x, p, keep);
    dropout_one(x, y, e + 1, n, w.y, p, keep);
    dropout_one(x, y, e + 2, n, w.z, p, keep);
    dropout_one(x, y, e + 3, n, w.w, p, keep);
}

extern "C" __global__ void dropout_forward(const float* __restrict__ x, float* __restrict__ y, int n, float p,
                                           unsigned long long seed, unsigned long long offset,
                                           unsigned long long first,
                                           const unsigned long long* __restrict__ counter) {
    dropout_apply(x, y, n, p, seed, offset, first, counter);
}

// dx = dy * mask / (1 - p): the forward's mask, regenerated.
extern "C" __global__ void dropout_backward(const float* __restrict__ gy, float* __restrict__ gx, int n, float p,
                                            unsigned long long seed, unsigned long long offset,
                                            unsigned long long first,
                                            const unsigned long long* __restrict__ counter) {
    dropout_apply(gy, gx, n, p, seed, offset, first, counter);
}

extern "C" __global__ void dropout_forward_bf16(const bf16* __restrict__ x, bf16* __restrict__ y, int n, float p,
                                                unsigned long long seed, unsigned long long offset,
                                                unsigned long long first,
                                                const unsigned long long* __restrict__ counter) {
    dropout_apply(x, y, n, p, seed, offset, first, counter);
}

extern "C" __global__ void dropout_backward_bf16(const bf16* __restrict__ gy, bf16* __restrict__ gx, int n, float p,
                                                 unsigned long long seed, unsigned long long offset,
                                                 unsigned long long first,
                                                 const unsigned long long* __restrict__ counter) {
    dropout_apply(gy, gx, n, p, seed, offset, first, counter);
}
