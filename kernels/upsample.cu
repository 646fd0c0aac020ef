// Nearest-neighbour upsampling by 2 of NCHW planes (H, W are the input's size) and its backward, on float or bf16
// storage (dtype.cuh; the backward's 4-term sum is f32).
#include "dtype.cuh"

// One thread per output element: y[p, oh, ow] = x[p, oh / 2, ow / 2].
template <typename T>
static __device__ __forceinline__ void upsample_fwd(const T* __restrict__ x, T* __restrict__ y, int n_out, int h,
                                                    int w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out) return;
    int w2 = 2 * w;
    int ow = i % w2;
    int oh = (i / w2) % (2 * h);
    int plane = i / (4 * h * w);
    y[i] = x[(plane * h + oh / 2) * w + ow / 2];
}

// One thread per input element: dx[p, ih, iw] = sum of the 2x2 block of g at (2 ih, 2 iw).
template <typename T>
static __device__ __forceinline__ void upsample_bwd(const T* __restrict__ g, T* __restrict__ dx, int n_in, int h,
                                                    int w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_in) return;
    int iw = i % w;
    int ih = (i / w) % h;
    int plane = i / (h * w);
    int w2 = 2 * w;
    const T* top = g + ((long long)plane * 2 * h + 2 * ih) * w2 + 2 * iw;
    dx[i] = dt_as<T>(dt_f32(top[0]) + dt_f32(top[1]) + dt_f32(top[w2]) + dt_f32(top[w2 + 1]));
}

extern "C" __global__ void upsample_nearest2x_forward(const float* __restrict__ x, float* __restrict__ y, int n_out,
                                                      int h, int w) {
    upsample_fwd(x, y, n_out, h, w);
}

extern "C" __global__ void upsample_nearest2x_forward_bf16(const bf16* __restrict__ x, bf16* __restrict__ y,
                                                           int n_out, int h, int w) {
    upsample_fwd(x, y, n_out, h, w);
}

extern "C" __global__ void upsample_nearest2x_backward(const float* __restrict__ g, float* __restrict__ dx, int n_in,
                                                       int h, int w) {
    upsample_bwd(g, dx, n_in, h, w);
}

extern "C" __global__ void upsample_nearest2x_backward_bf16(const bf16* __restrict__ g, bf16* __restrict__ dx,
                                                            int n_in, int h, int w) {
    upsample_bwd(g, dx, n_in, h, w);
}
