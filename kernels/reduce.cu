// Whole-tensor reductions to one device scalar (sum, mean, MSE) and their backward broadcasts. Two stages, both
// deterministic: per-block partials in double (grid-stride), then one block adds the partials in a fixed tree.

#define REDUCE_THREADS 256

// Tree-sum of one double per thread over a REDUCE_THREADS block; the total lands in buf[0].
static __device__ void reduce_block_tree(double* buf, double v) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int stride = REDUCE_THREADS / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
        __syncthreads();
    }
}

// partial[blockIdx.x] = this block's grid-stride share of the sum, by mode:
// mode 0: sum x; mode 1: sum (x - y)^2; mode 2: sum x^2.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
    reduce_partial_f32(const float* __restrict__ x, const float* __restrict__ y, int n, int mode,
                       double* __restrict__ partial) {
    __shared__ double reduce_buf[REDUCE_THREADS];
    double acc = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double v = (double)x[i];
        if (mode == 1) v -= (double)y[i];
        acc += mode == 0 ? v : v * v;
    }
    reduce_block_tree(reduce_buf, acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = reduce_buf[0];
}

// out[0] = (float)(scale * sum of partial[0..parts)); total[0] = the unscaled double sum. One block.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
    reduce_finish_f64(const double* __restrict__ partial, int parts, double scale, float* __restrict__ out,
                      double* __restrict__ total) {
    __shared__ double reduce_buf[REDUCE_THREADS];
    double acc = 0.0;
    for (int i = threadIdx.x; i < parts; i += REDUCE_THREADS) acc += partial[i];
    reduce_block_tree(reduce_buf, acc);
    if (threadIdx.x == 0) {
        out[0] = (float)(reduce_buf[0] * scale);
        total[0] = reduce_buf[0];
    }
}

// out[i] = g[0] * factor (the backward of sum / mean).
extern "C" __global__ void reduce_fill_f32(const float* __restrict__ g, float* __restrict__ out, int n, float factor) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = g[0] * factor;
}

// d pred = (2 g[0] / n) (pred - target), the factor rounded as the CPU reference does.
extern "C" __global__ void loss_mse_backward_f32(const float* __restrict__ pred, const float* __restrict__ target,
                                                 const float* __restrict__ g, float* __restrict__ out, int n,
                                                 float n_f) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (2.0f * g[0] / n_f) * (pred[i] - target[i]);
}

// The bias gradient, in two levels over many blocks (deterministic: fixed split boundaries, fixed trees, partials
// added in split order): out[j] = sum of g[i] over the rows r = i / inner with r % len == j, the backward of an
// operand of `len` values broadcast over rows of `inner` elements (a conv bias: [N, C, H, W] -> [C], inner = H*W,
// len = C; a linear bias: [N, F] -> [F], inner = 1). Block (j, s) sums the s-th run of `chunk` of channel j's
// elements (numbered row by row) into dst[j * gridDim.y + s]: with one split that is out itself.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
    reduce_bias_partial_f32(const float* __restrict__ g, float* __restrict__ dst, int n, int inner, int len,
                            long long chunk) {
    __shared__ float bias_warp_sums[REDUCE_THREADS / 32];
    const int j = blockIdx.x, rows = n / inner;
    const long long rows_j = rows > j ? (rows - j + len - 1) / len : 0;  // rows j, j + len, j + 2 len, ...
    const long long begin = (long long)blockIdx.y * chunk;
    const long long end = min(rows_j * inner, begin + chunk);
    float acc = 0.0f;
    for (long long t = begin + threadIdx.x; t < end; t += REDUCE_THREADS) {
        const long long r = j + (t / inner) * (long long)len;
        acc += g[r * inner + t % inner];
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) bias_warp_sums[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int w = 0; w < REDUCE_THREADS / 32; ++w) total += bias_warp_sums[w];
        dst[(size_t)j * gridDim.y + blockIdx.y] = total;
    }
}

// out[j] = sum over s of partial[j * splits + s], in split order; one thread per channel.
extern "C" __global__ void reduce_bias_finish_f32(const float* __restrict__ partial, float* __restrict__ out, int len,
                                                  int splits) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= len) return;
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) acc += partial[(size_t)j * splits + s];
    out[j] = acc;
}
