// GroupNorm (optionally fused with SiLU) forward and backward; see src/ops/group_norm.rs for the math.
// x is [N, C, S] (S = product of the spatial dims); group g of item n is the contiguous slice of M = (C/G)*S values
// starting at (n*G + g)*M. One block per (n, g) in both passes. x, y, gy, dx are f32 or bf16 (the _f32 / _bf16
// instantiations); gamma, beta, the statistics and the parameter-gradient partials are f32, and so is every sum.
#include "dtype.cuh"

#define GN_THREADS 256

static __device__ __forceinline__ float gn_warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// The block-wide sums of a and b, returned to every thread (the warp partials are added in a fixed order, so every
// thread gets the same bits). Safe to call repeatedly: it syncs before reusing its shared slots.
static __device__ float2 gn_block_sum2(float a, float b) {
    __shared__ float2 gn_partials[32];
    a = gn_warp_sum(a);
    b = gn_warp_sum(b);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) gn_partials[warp] = make_float2(a, b);
    __syncthreads();
    float2 r = make_float2(0.0f, 0.0f);
    int warps = (blockDim.x + 31) >> 5;
    for (int i = 0; i < warps; ++i) {
        r.x += gn_partials[i].x;
        r.y += gn_partials[i].y;
    }
    return r;
}

static __device__ __forceinline__ float gn_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

// y = GroupNorm(x) (silu == 0) or SiLU(GroupNorm(x)); mean_out / rstd_out [N*G] keep the statistics for the
// backward. Two passes over the group for the statistics (mean, then the centred sum of squares: no cancellation),
// a third to write y; the group (at most a few tens of KB) stays in L1/L2 between them.
template <typename T>
static __device__ __forceinline__ void group_norm_fwd(const T* __restrict__ x, const float* __restrict__ gamma,
                                                      const float* __restrict__ beta, T* __restrict__ y,
                                                      float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                                      int C, int G, int S, float eps, int silu) {
    const int ng = blockIdx.x, g = ng % G, cpg = C / G, M = cpg * S;
    const T* xg = x + (size_t)ng * M;
    T* yg = y + (size_t)ng * M;

    float s = 0.0f;
    for (int i = threadIdx.x; i < M; i += blockDim.x) s += dt_f32(xg[i]);
    const float mean = gn_block_sum2(s, 0.0f).x / (float)M;
    float q = 0.0f;
    for (int i = threadIdx.x; i < M; i += blockDim.x) {
        float d = dt_f32(xg[i]) - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(gn_block_sum2(q, 0.0f).x / (float)M + eps);
    if (threadIdx.x == 0) {
        mean_out[ng] = mean;
        rstd_out[ng] = rstd;
    }
    for (int i = threadIdx.x; i < M; i += blockDim.x) {
        int c = g * cpg + i / S;
        // z = x*a + b with the affine folded in, as the CPU reference.
        float a = rstd * __ldg(gamma + c);
        float b = __ldg(beta + c) - mean * a;
        float z = dt_f32(xg[i]) * a + b;
        yg[i] = dt_as<T>(silu ? z * gn_sigmoid(z) : z);
    }
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    group_norm_forward_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                           const float* __restrict__ beta, float* __restrict__ y, float* __restrict__ mean_out,
                           float* __restrict__ rstd_out, int C, int G, int S, float eps, int silu) {
    group_norm_fwd<float>(x, gamma, beta, y, mean_out, rstd_out, C, G, S, eps, silu);
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    group_norm_forward_bf16(const bf16* __restrict__ x, const float* __restrict__ gamma,
                            const float* __restrict__ beta, bf16* __restrict__ y, float* __restrict__ mean_out,
                            float* __restrict__ rstd_out, int C, int G, int S, float eps, int silu) {
    group_norm_fwd<bf16>(x, gamma, beta, y, mean_out, rstd_out, C, G, S, eps, silu);
}

// Backward of one (n, g) group. For each channel c of the group: (sum dz, sum dz*xhat) over its S values go to
// partial[(n*C + c)*2 + {0, 1}] (group_norm_param_grads_f32 adds them over n into dbeta, dgamma). With need_dx,
// dx = rstd * (dz*gamma - mean(dz*gamma) - xhat * mean(dz*gamma*xhat)) over the group. With silu, dz is the
// incoming gradient taken back through SiLU at the recomputed z = xhat*gamma + beta.
template <typename T>
static __device__ __forceinline__ void group_norm_bwd(const T* __restrict__ x, const float* __restrict__ gamma,
                                                      const float* __restrict__ beta, const float* __restrict__ mean,
                                                      const float* __restrict__ rstd, const T* __restrict__ gy,
                                                      T* __restrict__ dx, int need_dx, float* __restrict__ partial,
                                                      int C, int G, int S, int silu) {
    const int ng = blockIdx.x, g = ng % G, cpg = C / G, M = cpg * S;
    const size_t base = (size_t)ng * M;
    const float mu = mean[ng], rs = rstd[ng];

    auto dz_at = [&](int i, float gc, float bc, float xhat) {
        float d = dt_f32(gy[base + i]);
        if (silu) {
            float z = xhat * gc + bc;
            float sg = gn_sigmoid(z);
            d *= sg * (1.0f + z * (1.0f - sg));
        }
        return d;
    };

    float sum_dh = 0.0f, sum_dh_xhat = 0.0f;  // the same in every thread (built from block sums)
    for (int k = 0; k < cpg; ++k) {
        const int c = g * cpg + k;
        const float gc = __ldg(gamma + c), bc = __ldg(beta + c);
        float a = 0.0f, b = 0.0f;
        for (int i = threadIdx.x; i < S; i += blockDim.x) {
            int idx = k * S + i;
            float xhat = (dt_f32(x[base + idx]) - mu) * rs;
            float dz = dz_at(idx, gc, bc, xhat);
            a += dz;
            b += dz * xhat;
        }
        float2 r = gn_block_sum2(a, b);
        if (threadIdx.x == 0) {
            // (n*C + c) = ng*cpg + k.
            partial[((size_t)ng * cpg + k) * 2] = r.x;
            partial[((size_t)ng * cpg + k) * 2 + 1] = r.y;
        }
        sum_dh += r.x * gc;
        sum_dh_xhat += r.y * gc;
    }
    if (!need_dx) return;
    const float mean_dh = sum_dh / (float)M, mean_dh_xhat = sum_dh_xhat / (float)M;
    for (int i = threadIdx.x; i < M; i += blockDim.x) {
        int c = g * cpg + i / S;
        float gc = __ldg(gamma + c), bc = __ldg(beta + c);
        float xhat = (dt_f32(x[base + i]) - mu) * rs;
        float dz = dz_at(i, gc, bc, xhat);
        dx[base + i] = dt_as<T>(rs * (dz * gc - mean_dh - xhat * mean_dh_xhat));
    }
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    group_norm_backward_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                            const float* __restrict__ beta, const float* __restrict__ mean,
                            const float* __restrict__ rstd, const float* __restrict__ gy, float* __restrict__ dx,
                            int need_dx, float* __restrict__ partial, int C, int G, int S, int silu) {
    group_norm_bwd<float>(x, gamma, beta, mean, rstd, gy, dx, need_dx, partial, C, G, S, silu);
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    group_norm_backward_bf16(const bf16* __restrict__ x, const float* __restrict__ gamma,
                             const float* __restrict__ beta, const float* __restrict__ mean,
                             const float* __restrict__ rstd, const bf16* __restrict__ gy, bf16* __restrict__ dx,
                             int need_dx, float* __restrict__ partial, int C, int G, int S, int silu) {
    group_norm_bwd<bf16>(x, gamma, beta, mean, rstd, gy, dx, need_dx, partial, C, G, S, silu);
}

// dbeta[c] = sum_n partial[(n*C + c)*2], dgamma[c] = sum_n partial[(n*C + c)*2 + 1]; one thread per channel.
extern "C" __global__ void group_norm_param_grads_f32(const float* __restrict__ partial, float* __restrict__ dgamma,
                                                      float* __restrict__ dbeta, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sb = 0.0f, sg = 0.0f;
    for (int n = 0; n < N; ++n) {
        sb += partial[((size_t)n * C + c) * 2];
        sg += partial[((size_t)n * C + c) * 2 + 1];
    }
    dgamma[c] = sg;
    dbeta[c] = sb;
}
