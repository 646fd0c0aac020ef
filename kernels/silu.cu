// SiLU forward and backward, one thread per element (see src/ops/silu.rs for the math).

extern "C" __global__ void silu_forward(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float a = x[i];
        y[i] = a / (1.0f + __expf(-a));
    }
}

extern "C" __global__ void silu_backward(const float* __restrict__ x, const float* __restrict__ gy,
                                         float* __restrict__ gx, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float a = x[i];
        float s = 1.0f / (1.0f + __expf(-a));
        gx[i] = gy[i] * s * (1.0f + a * (1.0f - s));
    }
}
