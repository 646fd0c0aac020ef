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

// ---------------------------------------------------------------------------------------------------------------
// The multi-tensor training step (src/optim/cuda.rs, `MultiTensor`): three launches over every parameter tensor.
//   1. optim_sumsq_partials_f32: the partial sums of g^2, per tensor in the same blocks as reduce_partial_f32 (mode 2)
//      would use, all into one partial buffer;
//   2. optim_step_state_f64 (one block): the norm from the partials in the same fixed tree as reduce_finish_f64, the
//      loss/norm finiteness check, and this step's scalars (warm-up lr, bias corrections, clip factor) into `state`;
//   3. optim_adam_ema_f32: clip * AdamW * EMA, reading the scalars from `state` (skips when the step is bad).
// The per-step scalars live in device memory and the step count advances on the device, so the same three launches
// replay unchanged (a CUDA graph needs no update). Every f32 operation is the CPU reference's, in its order, with
// explicit _rn intrinsics so that nvcc cannot contract a multiply-add into an FMA: the update is bit-exact.

// The tensor table: OPT_FIELDS u64 per tensor (pointers as integers), then one row holding the block totals.
#define OPT_FIELDS 8
#define OPT_P 0
#define OPT_G 1
#define OPT_M 2
#define OPT_V 3
#define OPT_EMA 4            // 0: no EMA shadow
#define OPT_N 5              // elements
#define OPT_SUMSQ_BLOCK 6    // first block of this tensor in the sum-of-squares grid
#define OPT_ADAM_BLOCK 7     // first block of this tensor in the Adam grid

// The step state (doubles; f32 values are stored exactly). Layout mirrored in src/optim/cuda.rs (`state`).
#define ST_STEPS 0       // Adam steps taken (the warm-up's step and t - 1 of the bias corrections)
#define ST_BAD_STEP 1    // the first step whose loss or norm was not finite (0: none); sticky
#define ST_BAD_WHAT 2    // 1: the loss, 2: the gradient norm
#define ST_BAD_VALUE 3   // that value
#define ST_LOSS 4        // this step's loss
#define ST_NORM 5        // this step's gradient norm (before clipping)
#define ST_LR 6          // this step's learning rate
#define ST_STEP_SIZE 7   // lr / (1 - beta1^t)
#define ST_BC2_SQRT 8    // sqrt(1 - beta2^t)
#define ST_CLIP 9        // the clip factor when it applies (< 1), else 1 (g * 1 is g, bit for bit)
#define ST_SKIP 10       // 1: leave every parameter as it is this step
#define ST_LEN 16

#define OPT_THREADS 256
#define OPT_ADAM_CHUNK 2048  // elements per block of the Adam grid (8 per thread)

// The tensor whose block range holds block b: the largest k with table[k][field] <= b (every thread of a block
// gets the same k; a tensor with no blocks shares its first block with the next and loses to it).
static __device__ __forceinline__ int opt_tensor_of(const unsigned long long* __restrict__ table, int tensors,
                                                    int field, unsigned long long b) {
    int lo = 0, hi = tensors - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (table[(size_t)mid * OPT_FIELDS + field] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// The tree of reduce.cu's reduce_block_tree (same order, same bits); the total lands in buf[0].
static __device__ __forceinline__ void opt_block_tree(double* buf, double v) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int stride = OPT_THREADS / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
        __syncthreads();
    }
}

// partial[b] = block b's share of sum g^2 over its tensor, grid-stride over that tensor's blocks exactly as
// reduce_partial_f32 (mode 2) strides over its grid.
extern "C" __global__ void __launch_bounds__(OPT_THREADS)
    optim_sumsq_partials_f32(const unsigned long long* __restrict__ table, int tensors, double* __restrict__ partial) {
    __shared__ double opt_buf[OPT_THREADS];
    const int k = opt_tensor_of(table, tensors, OPT_SUMSQ_BLOCK, blockIdx.x);
    const unsigned long long* row = table + (size_t)k * OPT_FIELDS;
    const float* g = (const float*)row[OPT_G];
    const long long n = (long long)row[OPT_N];
    const long long first = (long long)row[OPT_SUMSQ_BLOCK];
    const long long parts = (long long)row[OPT_FIELDS + OPT_SUMSQ_BLOCK] - first;
    double acc = 0.0;
    for (long long i = (blockIdx.x - first) * OPT_THREADS + threadIdx.x; i < n; i += parts * OPT_THREADS) {
        double v = (double)g[i];
        acc = fma(v, v, acc);  // what nvcc made of reduce_partial_f32's acc += v * v
    }
    opt_block_tree(opt_buf, acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = opt_buf[0];
}

// a^b for b >= 1 by binary exponentiation: the loop of compiler-rt's __powidf2, which Rust's f64::powi calls
// (src/optim.rs, powi_exact, is the same loop on the CPU).
static __device__ __forceinline__ double opt_powi(double a, unsigned int b) {
    double r = 1.0;
    while (true) {
        if (b & 1u) r = __dmul_rn(r, a);
        b >>= 1;
        if (b == 0) break;
        a = __dmul_rn(a, a);
    }
    return r;
}

// One block. The gradient norm (sqrt of the partials' sum), then, in thread 0: a non-finite loss or norm marks the
// step bad (kept in state until the run stops; nan_at_step injects a NaN loss at that step, for tests), and a good
// step's scalars as the CPU computes them (src/optim.rs: clip_grad_norm, warmup_lr, Adam::step_with_ema).
extern "C" __global__ void __launch_bounds__(OPT_THREADS)
    optim_step_state_f64(const double* __restrict__ partial, int parts, const float* __restrict__ loss,
                         double* __restrict__ state, float max_norm, float base_lr, long long warmup_steps,
                         float beta1, float beta2, long long nan_at_step) {
    __shared__ double opt_buf[OPT_THREADS];
    double acc = 0.0;
    for (int i = threadIdx.x; i < parts; i += OPT_THREADS) acc += partial[i];
    opt_block_tree(opt_buf, acc);
    if (threadIdx.x != 0) return;
    const double norm = sqrt(opt_buf[0]);
    const long long taken = (long long)state[ST_STEPS];
    float l = loss[0];
    if (nan_at_step == taken + 1) l = __int_as_float(0x7fc00000);
    state[ST_LOSS] = l;
    state[ST_NORM] = norm;
    state[ST_SKIP] = 1.0;
    if (state[ST_BAD_STEP] != 0.0) return;
    if (!isfinite(l) || !isfinite(norm)) {
        state[ST_BAD_STEP] = (double)(taken + 1);
        state[ST_BAD_WHAT] = isfinite(l) ? 2.0 : 1.0;
        state[ST_BAD_VALUE] = isfinite(l) ? (double)(float)norm : (double)l;
        return;
    }
    const float coef = (float)__ddiv_rn((double)max_norm, __dadd_rn(norm, 1e-6));
    const float lr = (warmup_steps == 0 || taken >= warmup_steps)
                         ? base_lr
                         : (float)__ddiv_rn(__dmul_rn((double)base_lr, (double)taken), (double)warmup_steps);
    const unsigned int t = (unsigned int)(taken + 1);
    const double bc1 = __dsub_rn(1.0, opt_powi((double)beta1, t));
    state[ST_BC2_SQRT] = (float)__dsqrt_rn(__dsub_rn(1.0, opt_powi((double)beta2, t)));
    state[ST_STEP_SIZE] = (float)__ddiv_rn((double)lr, bc1);
    state[ST_LR] = lr;
    state[ST_CLIP] = coef < 1.0f ? coef : 1.0f;
    state[ST_STEPS] = (double)(taken + 1);
    state[ST_SKIP] = 0.0;
}

// OPT_ADAM_CHUNK elements of one tensor per block: g times the clip factor, AdamW or L2 decay,
// the Adam update of p, m, v, and the EMA shadow (when the table has one), in adam_ema_step_f32's order.
extern "C" __global__ void __launch_bounds__(OPT_THREADS)
    optim_adam_ema_f32(const unsigned long long* __restrict__ table, int tensors, const double* __restrict__ state,
                       float beta1, float beta2, float eps, float weight_decay, int decoupled, float ema_rate) {
    if (state[ST_SKIP] != 0.0) return;
    const int k = opt_tensor_of(table, tensors, OPT_ADAM_BLOCK, blockIdx.x);
    const unsigned long long* row = table + (size_t)k * OPT_FIELDS;
    float* p = (float*)row[OPT_P];
    const float* g = (const float*)row[OPT_G];
    float* m = (float*)row[OPT_M];
    float* v = (float*)row[OPT_V];
    float* ema = (float*)row[OPT_EMA];
    const long long n = (long long)row[OPT_N];
    const long long begin = (blockIdx.x - (long long)row[OPT_ADAM_BLOCK]) * OPT_ADAM_CHUNK;
    const long long end = min(n, begin + OPT_ADAM_CHUNK);
    const float lr = (float)state[ST_LR], step_size = (float)state[ST_STEP_SIZE];
    const float bc2_sqrt = (float)state[ST_BC2_SQRT], clip = (float)state[ST_CLIP];
    const float decay_factor = __fsub_rn(1.0f, __fmul_rn(lr, weight_decay));
    const float one_m_b1 = __fsub_rn(1.0f, beta1), one_m_b2 = __fsub_rn(1.0f, beta2);
    for (long long i = begin + threadIdx.x; i < end; i += OPT_THREADS) {
        float pi = p[i], gi = g[i];
        gi = __fmul_rn(gi, clip);
        if (weight_decay != 0.0f) {
            if (decoupled) pi = __fmul_rn(pi, decay_factor);
            else gi = __fadd_rn(gi, __fmul_rn(weight_decay, pi));
        }
        const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_m_b1, gi));
        const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(one_m_b2, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        pi = __fsub_rn(pi, __fdiv_rn(__fmul_rn(step_size, mi), denom));
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (ema != nullptr) {
            const float e = ema[i];
            ema[i] = __fsub_rn(e, __fmul_rn(ema_rate, __fsub_rn(e, pi)));
        }
    }
}
