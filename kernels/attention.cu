// The row-wise parts of single-head attention (see src/ops/attention.rs); the products run as batched GEMMs.
// Rows are the B*T query rows of S / P ([B, T, T]); one warp per row, 8 rows per 256-thread block.

static __device__ __forceinline__ float attention_warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

static __device__ __forceinline__ float attention_warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// In place: s[row] <- softmax(scale * s[row]), with the max subtracted first (as the CPU reference:
// exp((s - max) * scale) / sum).
extern "C" __global__ void attention_softmax_f32(float* __restrict__ s, int rows, int T, float scale) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float* r = s + (size_t)row * T;
    float m = -INFINITY;
    for (int j = lane; j < T; j += 32) m = fmaxf(m, r[j]);
    m = attention_warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float e = expf((r[j] - m) * scale);
        r[j] = e;
        sum += e;
    }
    float inv = 1.0f / attention_warp_sum(sum);
    for (int j = lane; j < T; j += 32) r[j] *= inv;
}

// In place: d[row] <- p[row] * (d[row] - dot(d[row], p[row])) * scale: dP -> dS (already divided by sqrt(C)).
extern "C" __global__ void attention_softmax_backward_f32(const float* __restrict__ p, float* __restrict__ d, int rows,
                                                          int T, float scale) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* pr = p + (size_t)row * T;
    float* dr = d + (size_t)row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) dot += dr[j] * pr[j];
    dot = attention_warp_sum(dot);
    for (int j = lane; j < T; j += 32) dr[j] = pr[j] * (dr[j] - dot) * scale;
}
