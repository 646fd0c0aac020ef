// Optimizer kernels (see src/optim.rs for the math): a fused Adam/AdamW + EMA update over a flat parameter array,
// and the pieces of global gradient-norm clipping (sum-of-squares partials in double, then an in-place scale).

// One thread per element. The host passes the per-step scalars PyTorch computes on the host:
// step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t). decoupled != 0: AdamW (p *= 1 - lr*wd);
// otherwise L2 decay (g += wd*p). `ema` may be null; otherwise ema -= (1 - ema_decay) * (ema - p_new).
extern "C" __global__ void adam_ema_step_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                             float* __restrict__ v, float* __restrict__ ema, int n, float lr,
                                             float beta1, float beta2, float eps, float weight_decay, int decoupled,
                                             float step_size, float bc2_sqrt, float ema_decay) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i], gi = g[i];
    if (weight_decay != 0.0f) {
        if (decoupled) pi *= 1.0f - lr * weight_decay;
        else gi += weight_decay * pi;
    }
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    pi -= step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    if (ema != nullptr) {
        float e = ema[i];
        ema[i] = e - (1.0f - ema_decay) * (e - pi);
    }
}

#define ADAM_SUMSQ_THREADS 256

// partial[blockIdx.x] = sum of x[i]^2 over this block's grid-stride share, accumulated in double (as the CPU
// reference). Launch with ADAM_SUMSQ_THREADS threads per block; the host adds the partials of every tensor.
extern "C" __global__ void adam_sumsq_partial_f32(const float* __restrict__ x, int n, double* __restrict__ partial) {
    __shared__ double adam_sumsq_shared[ADAM_SUMSQ_THREADS];
    double acc = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double xi = (double)x[i];
        acc += xi * xi;
    }
    adam_sumsq_shared[threadIdx.x] = acc;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) adam_sumsq_shared[threadIdx.x] += adam_sumsq_shared[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = adam_sumsq_shared[0];
}

// x *= s in place (the clip_grad_norm scale).
extern "C" __global__ void adam_scale_inplace_f32(float* __restrict__ x, int n, float s) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}
