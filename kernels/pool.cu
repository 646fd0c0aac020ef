// Inference-only pooling (src/ops/pool.rs has the exact PyTorch semantics these follow).

// One thread per output element of [planes, ho, wo]. mode 0: max; 1: average over in-image positions
// (count_include_pad = false); 2: average over the window clipped to the padded image (count_include_pad = true).
extern "C" __global__ void pool2d_forward(const float* __restrict__ x, float* __restrict__ y, int n_out, int h, int w,
                                          int ho, int wo, int k, int stride, int pad, int mode) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out) return;
    int ow = i % wo;
    int oh = (i / wo) % ho;
    long long plane = i / (ho * wo);
    const float* xp = x + plane * h * w;
    int h0 = oh * stride - pad, w0 = ow * stride - pad;
    int h1 = h0 + k, w1 = w0 + k;
    int padded = (min(h1, h + pad) - h0) * (min(w1, w + pad) - w0);
    int hs = max(h0, 0), he = min(h1, h), ws = max(w0, 0), we = min(w1, w);
    if (mode == 0) {
        float m = -INFINITY;
        for (int r = hs; r < he; ++r)
            for (int c = ws; c < we; ++c) {
                float v = xp[r * w + c];
                if (v > m || isnan(v)) m = v;
            }
        y[i] = m;
    } else {
        float s = 0.0f;
        for (int r = hs; r < he; ++r)
            for (int c = ws; c < we; ++c) s += xp[r * w + c];
        int count = mode == 1 ? (he - hs) * (we - ws) : padded;
        y[i] = s / (float)count;
    }
}

// One thread per plane: the mean of its hw values.
extern "C" __global__ void global_avg_pool_forward(const float* __restrict__ x, float* __restrict__ y, int planes,
                                                   int hw) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= planes) return;
    const float* xp = x + (long long)i * hw;
    float s = 0.0f;
    for (int j = 0; j < hw; ++j) s += xp[j];
    y[i] = s / (float)hw;
}
