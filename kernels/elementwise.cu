// Elementwise arithmetic used by the tensor core (gradient accumulation) and the add/mul ops.

extern "C" __global__ void add_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ z,
                                   int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = a[i] + b[i];
}

extern "C" __global__ void mul_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ z,
                                   int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = a[i] * b[i];
}

extern "C" __global__ void elementwise_sub_f32(const float* __restrict__ a, const float* __restrict__ b,
                                               float* __restrict__ z, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = a[i] - b[i];
}

extern "C" __global__ void elementwise_scale_f32(const float* __restrict__ x, float* __restrict__ y, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * s;
}

extern "C" __global__ void elementwise_add_scalar_f32(const float* __restrict__ x, float* __restrict__ y, float s,
                                                      int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + s;
}

// A "bias" operand broadcast onto a full-shape one: small[(i / inner) % small_len] pairs with big[i]. Covers the
// [N,C,1,1] time embedding on [N,C,H,W] (inner = H*W, small_len = N*C), a [C,1,1] vector and a scalar.
// op: 0 big + small, 1 big - small, 2 small - big, 3 big * small.
extern "C" __global__ void elementwise_bcast_f32(const float* __restrict__ big, const float* __restrict__ small,
                                                 float* __restrict__ y, int n, int inner, int small_len, int op) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = big[i];
    float q = small[(i / inner) % small_len];
    float r;
    switch (op) {
        case 0: r = p + q; break;
        case 1: r = p - q; break;
        case 2: r = q - p; break;
        default: r = p * q; break;
    }
    y[i] = r;
}

static __device__ float elementwise_warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// The backward of elementwise_bcast_f32 for the small operand: out[j] = sum of g[i] over the rows r = i / inner
// with r % len == j. One block (a multiple of 32 threads, at most 1024) per j.
extern "C" __global__ void elementwise_bcast_reduce_f32(const float* __restrict__ g, float* __restrict__ out, int n,
                                                        int inner, int len) {
    __shared__ float warp_sums[32];
    int j = blockIdx.x;
    int rows = n / inner;
    long long rows_j = (rows > j) ? (rows - j + len - 1) / len : 0;  // rows j, j + len, j + 2 len, ...
    long long total = rows_j * inner;
    float acc = 0.0f;
    for (long long t = threadIdx.x; t < total; t += blockDim.x) {
        long long r = j + (t / inner) * (long long)len;
        acc += g[r * inner + t % inner];
    }
    acc = elementwise_warp_sum(acc);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        int warps = (blockDim.x + 31) >> 5;
        acc = lane < warps ? warp_sums[lane] : 0.0f;
        acc = elementwise_warp_sum(acc);
        if (lane == 0) out[j] = acc;
    }
}
