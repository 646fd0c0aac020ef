// The unfused bf16 attention (src/ops/attention/unfused_bf16.rs, for shapes the fused kernels do not take): the row
// log-sum-exp the fused forward saves, computed from the materialised scores.

// lse[r] = log sum_j exp(scale * s[r, j]), max subtracted first; one thread per row of t floats.
extern "C" __global__ void attention_unfused_row_lse_f32(const float* __restrict__ s, float* __restrict__ lse,
                                                          int rows, int t, float scale) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = s + (long long)r * t;
    float m = -INFINITY;
    for (int j = 0; j < t; ++j) m = fmaxf(m, row[j]);
    float sum = 0.0f;
    for (int j = 0; j < t; ++j) sum += expf((row[j] - m) * scale);
    lse[r] = m * scale + logf(sum);
}
