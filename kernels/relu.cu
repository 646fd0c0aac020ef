// Inference-only ReLU, one thread per element; NaN passes through as in torch.relu.
extern "C" __global__ void relu_forward(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}
