// Nearest-neighbour upsampling by 2 of NCHW planes (H, W are the input's size) and its backward.

// One thread per output element: y[p, oh, ow] = x[p, oh / 2, ow / 2].
extern "C" __global__ void upsample_nearest2x_forward(const float* __restrict__ x, float* __restrict__ y, int n_out,
                                                      int h, int w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out) return;
    int w2 = 2 * w;
    int ow = i % w2;
    int oh = (i / w2) % (2 * h);
    int plane = i / (4 * h * w);
    y[i] = x[(plane * h + oh / 2) * w + ow / 2];
}

// One thread per input element: dx[p, ih, iw] = sum of the 2x2 block of g at (2 ih, 2 iw).
extern "C" __global__ void upsample_nearest2x_backward(const float* __restrict__ g, float* __restrict__ dx, int n_in,
                                                       int h, int w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_in) return;
    int iw = i % w;
    int ih = (i / w) % h;
    int plane = i / (h * w);
    int w2 = 2 * w;
    const float* top = g + ((long long)plane * 2 * h + 2 * ih) * w2 + 2 * iw;
    dx[i] = top[0] + top[1] + top[w2] + top[w2 + 1];
}
