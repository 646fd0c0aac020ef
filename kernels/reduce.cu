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
