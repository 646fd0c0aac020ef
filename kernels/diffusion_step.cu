// Fused diffusion steps (src/ops/diffusion_step.rs has the math and the CPU reference).

// x_t = a[s] * x0 + b[s] * noise, s = sample index of element i.
extern "C" __global__ void diffusion_q_sample(const float* __restrict__ x0, const float* __restrict__ noise,
                                              const float* __restrict__ a, const float* __restrict__ b,
                                              float* __restrict__ xt, int n, int per_sample) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        int s = i / per_sample;
        xt[i] = a[s] * x0[i] + b[s] * noise[i];
    }
}

// One reverse step: x̂0 = recip*x - recipm1*eps (clipped), out = c_x0*x̂0 + c_xt*x + c_eps*eps + sigma*z.
extern "C" __global__ void diffusion_reverse_step(const float* __restrict__ x, const float* __restrict__ eps,
                                                  const float* __restrict__ z, float* __restrict__ out, int n,
                                                  float recip, float recipm1, int clip, float c_x0, float c_xt,
                                                  float c_eps, float sigma) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float xv = x[i], ev = eps[i];
        float x0 = recip * xv - recipm1 * ev;
        if (clip) x0 = fminf(fmaxf(x0, -1.0f), 1.0f);
        out[i] = c_x0 * x0 + c_xt * xv + c_eps * ev + sigma * z[i];
    }
}
