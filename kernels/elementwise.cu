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
