// Fused diffusion steps (src/ops/diffusion_step.rs has the math and the CPU reference).
#include "rng.cu"

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

// t of sample s: element s of the uniform draw at `offset`, t = min(trunc(u * steps), steps - 1) in f64, as
// Diffusion::training_batch computes it on the host.
static __device__ __forceinline__ int diffusion_draw_t(unsigned long long seed, unsigned long long offset, long long s,
                                                       int steps) {
    uint4 w = rng_block(seed, offset, (unsigned long long)(s >> 2));
    int lane = (int)(s & 3);
    unsigned int word = lane == 0 ? w.x : lane == 1 ? w.y : lane == 2 ? w.z : w.w;
    long long t = (long long)__dmul_rn((double)rng_uniform(word), (double)steps);
    return t < steps - 1 ? (int)t : steps - 1;
}

// L_simple's inputs in one pass (src/ops/diffusion_step training_batch): per sample s its timestep t_s (the uniform
// draw at rng_offset(counter, rel_t)), the noise eps (the normal draw at rng_offset(counter, rel_eps), exactly as
// rng_normal_f32 writes it), x_t = sqrt_ab[t] * x0 + sqrt_1mab[t] * eps (the FMA form nvcc gave diffusion_q_sample,
// written out so both give the same bits), t_s as a float and the embedding row emb_table[t_s]. Thread i does
// elements 4i..4i+3 of x (one Philox call for their normals) and entry i of the [samples, dim] embedding.
extern "C" __global__ void diffusion_training_batch(
    const float* __restrict__ x0, float* __restrict__ xt, float* __restrict__ noise, float* __restrict__ t_out,
    float* __restrict__ emb, int n, int per_sample, int samples, int dim, const float* __restrict__ sqrt_ab,
    const float* __restrict__ sqrt_1mab, const float* __restrict__ emb_table, int steps, unsigned long long seed,
    const unsigned long long* __restrict__ counter, unsigned long long rel_t, unsigned long long rel_eps) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long off_t = rng_offset(counter, rel_t);
    const long long e = i * 4;
    if (e < n) {
        uint4 w = rng_block(seed, rng_offset(counter, rel_eps), (unsigned long long)i);
        float z[4];
        rng_box_muller(w.x, w.y, &z[0], &z[1]);
        rng_box_muller(w.z, w.w, &z[2], &z[3]);
        long long cached = -1;
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const long long k = e + j;
            if (k < n) {
                const long long s = k / per_sample;
                if (s != cached) {
                    const int t = diffusion_draw_t(seed, off_t, s, steps);
                    a = sqrt_ab[t];
                    b = sqrt_1mab[t];
                    cached = s;
                }
                noise[k] = z[j];
                xt[k] = __fmaf_rn(a, x0[k], __fmul_rn(b, z[j]));
            }
        }
    }
    if (i < (long long)samples * dim) {
        const long long s = i / dim;
        const int t = diffusion_draw_t(seed, off_t, s, steps);
        emb[i] = emb_table[(long long)t * dim + i % dim];
        if (i % dim == 0) t_out[s] = (float)t;
    }
}

// The end of a training step, after every reader of its draws: the device-counted offsets of the noise and dropout
// streams move on by the draws the step took (one thread).
extern "C" __global__ void diffusion_advance_counters(unsigned long long* __restrict__ counters,
                                                      unsigned long long noise_draws,
                                                      unsigned long long dropout_draws) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        counters[0] += noise_draws;
        counters[1] += dropout_draws;
    }
}
