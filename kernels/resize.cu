// Inference-only bilinear resize, align_corners = false (src/ops/resize.rs has the formula). Every product and sum
// is rounded on its own (__fmul_rn / __fadd_rn: nvcc would otherwise contract them into fmas) so the result is the
// CPU reference's, bit for bit: a contracted source coordinate moves λ by an ulp of a coordinate up to 31, i.e.
// ~2e-6, which the simulator's selftest caught at 32→299 against the 1e-6 tolerance.

static __device__ void resize_bilinear_index(int dst, int in_size, int out_size, int* i0, int* i1, float* l0,
                                             float* l1) {
    float scale = (float)in_size / (float)out_size;
    float src = fmaxf(__fsub_rn(__fmul_rn(scale, __fadd_rn((float)dst, 0.5f)), 0.5f), 0.0f);
    int a = min((int)src, in_size - 1);
    *i0 = a;
    *i1 = a < in_size - 1 ? a + 1 : a;
    *l1 = src - (float)a;
    *l0 = 1.0f - *l1;
}

extern "C" __global__ void resize_bilinear_forward(const float* __restrict__ x, float* __restrict__ y, int n_out,
                                                   int h, int w, int out_h, int out_w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out) return;
    int ow = i % out_w;
    int oh = (i / out_w) % out_h;
    long long plane = i / (out_h * out_w);
    const float* xp = x + plane * h * w;
    int h0, h1, w0, w1;
    float lh0, lh1, lw0, lw1;
    resize_bilinear_index(oh, h, out_h, &h0, &h1, &lh0, &lh1);
    resize_bilinear_index(ow, w, out_w, &w0, &w1, &lw0, &lw1);
    float top = __fadd_rn(__fmul_rn(lw0, xp[h0 * w + w0]), __fmul_rn(lw1, xp[h0 * w + w1]));
    float bottom = __fadd_rn(__fmul_rn(lw0, xp[h1 * w + w0]), __fmul_rn(lw1, xp[h1 * w + w1]));
    y[i] = __fadd_rn(__fmul_rn(lh0, top), __fmul_rn(lh1, bottom));
}
