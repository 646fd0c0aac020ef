// Philox4x32-10 (Salmon et al. 2011) and its conversions, identical to src/rng.rs: key = [seed_lo, seed_hi],
// counter of block i = [i_lo, i_hi, offset_lo, offset_hi], element e = word e % 4 of block e / 4,
// uniform = ((x >> 8) + 1) * 2^-24 in (0, 1], normals by Box-Muller on word pairs (0,1) and (2,3).
// Other kernel files use these helpers through `#include "rng.cu"`; the guard keeps the one translation unit
// (build.rs includes every .cu) from seeing them twice.
#ifndef RNG_CU_INCLUDED
#define RNG_CU_INCLUDED

static __device__ __forceinline__ uint4 rng_philox_round(uint4 c, uint2 k) {
    const unsigned int M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    unsigned int hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
    unsigned int hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
    return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

static __device__ __forceinline__ uint4 rng_philox4x32_10(uint4 c, uint2 k) {
    c = rng_philox_round(c, k);
#pragma unroll
    for (int round = 1; round < 10; ++round) {
        k.x += 0x9E3779B9u;
        k.y += 0xBB67AE85u;
        c = rng_philox_round(c, k);
    }
    return c;
}

// The four words of block `i` of the draw at `offset` in the stream keyed by `seed`.
static __device__ __forceinline__ uint4 rng_block(unsigned long long seed, unsigned long long offset,
                                                  unsigned long long i) {
    uint4 c = make_uint4((unsigned int)i, (unsigned int)(i >> 32), (unsigned int)offset,
                         (unsigned int)(offset >> 32));
    uint2 k = make_uint2((unsigned int)seed, (unsigned int)(seed >> 32));
    return rng_philox4x32_10(c, k);
}

// The offset of a draw: `*counter + rel` for a stream counted on the device (src/rng.rs `DeviceCounter`: a replayed
// CUDA graph keeps its arguments, so the step's offset comes from memory the device advances), else `rel` itself.
static __device__ __forceinline__ unsigned long long rng_offset(const unsigned long long* __restrict__ counter,
                                                                unsigned long long rel) {
    return counter != nullptr ? counter[0] + rel : rel;
}

// Exact: a 24-bit integer times a power of two.
static __device__ __forceinline__ float rng_uniform(unsigned int x) {
    return (float)((x >> 8) + 1u) * 5.9604644775390625e-8f;
}

static __device__ __forceinline__ void rng_box_muller(unsigned int a, unsigned int b, float* z0, float* z1) {
    float r = sqrtf(-2.0f * logf(rng_uniform(a)));
    float theta = 6.28318530717958647692f * rng_uniform(b);
    float s, c;
    sincosf(theta, &s, &c);  // same accuracy as sinf/cosf, one argument reduction
    *z0 = r * c;
    *z1 = r * s;
}

// n standard normals; one thread per block of 4 elements.
extern "C" __global__ void rng_normal_f32(float* __restrict__ out, int n, unsigned long long seed,
                                          unsigned long long offset) {
    long long block = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long e = block * 4;
    if (e >= n) return;
    uint4 w = rng_block(seed, offset, (unsigned long long)block);
    float z0, z1, z2, z3;
    rng_box_muller(w.x, w.y, &z0, &z1);
    rng_box_muller(w.z, w.w, &z2, &z3);
    out[e] = z0;
    if (e + 1 < n) out[e + 1] = z1;
    if (e + 2 < n) out[e + 2] = z2;
    if (e + 3 < n) out[e + 3] = z3;
}

// n uniforms in (0, 1]; one thread per block of 4 elements.
extern "C" __global__ void rng_uniform_f32(float* __restrict__ out, int n, unsigned long long seed,
                                           unsigned long long offset) {
    long long block = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long e = block * 4;
    if (e >= n) return;
    uint4 w = rng_block(seed, offset, (unsigned long long)block);
    out[e] = rng_uniform(w.x);
    if (e + 1 < n) out[e + 1] = rng_uniform(w.y);
    if (e + 2 < n) out[e + 2] = rng_uniform(w.z);
    if (e + 3 < n) out[e + 3] = rng_uniform(w.w);
}

#endif  // RNG_CU_INCLUDED
