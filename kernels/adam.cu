// Optimizer kernels (see src/optim.rs for the math): a fused Adam/AdamW + EMA update over a flat parameter array,
// the EMA alone, and the in-place scale of gradient-norm clipping (its sum of squares is reduce_partial_f32, mode 2).

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

// ema -= rate * (ema - p), rate = 1 - decay (the EMA alone, when no Adam step runs beside it).
extern "C" __global__ void adam_ema_update_f32(float* __restrict__ ema, const float* __restrict__ p, int n, float rate) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float e = ema[i];
        ema[i] = e - rate * (e - p[i]);
    }
}

// x *= s in place (the clip_grad_norm scale).
extern "C" __global__ void adam_scale_inplace_f32(float* __restrict__ x, int n, float s) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}
