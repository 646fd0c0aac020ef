// The sampler's replayable step (src/diffusion/graphed.rs): everything that changes from step to step is read from
// device tables at the index `*step`, so one captured CUDA graph serves every step. `sampler_advance` moves to the
// next step at the end of each.
#include "rng.cu"

// out[r, :] = table[*step, :] for each of the n rows (the timestep embedding of the step, the same for every sample).
extern "C" __global__ void sampler_gather_row(const int* __restrict__ step, const float* __restrict__ table,
                                              float* __restrict__ out, int rows, int dim) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * dim) out[i] = table[(long long)step[0] * dim + i % dim];
}

// One reverse step (as diffusion_reverse_step) with the coefficients of step *step, coefs[step] = (recip, recipm1,
// c_x0, c_xt, c_eps, sigma), and its noise z drawn here from Philox (seed, offsets[step]) exactly as rng_normal_f32
// draws it (z = 0 where sigma = 0, as the unfused path's zero buffer). One thread per block of 4 elements.
extern "C" __global__ void sampler_reverse_step(const float* __restrict__ x, const float* __restrict__ eps,
                                                float* __restrict__ out, int n, const int* __restrict__ step,
                                                const float* __restrict__ coefs,
                                                const unsigned long long* __restrict__ offsets, int clip,
                                                unsigned long long seed) {
    long long block = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long e0 = block * 4;
    if (e0 >= n) return;
    int s = step[0];
    const float* c = coefs + 6 * (long long)s;
    float recip = c[0], recipm1 = c[1], c_x0 = c[2], c_xt = c[3], c_eps = c[4], sigma = c[5];
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (sigma != 0.0f) {
        uint4 w = rng_block(seed, offsets[s], (unsigned long long)block);
        rng_box_muller(w.x, w.y, &z[0], &z[1]);
        rng_box_muller(w.z, w.w, &z[2], &z[3]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        long long i = e0 + j;
        if (i < n) {
            float xv = x[i], ev = eps[i];
            float x0 = recip * xv - recipm1 * ev;
            if (clip) x0 = fminf(fmaxf(x0, -1.0f), 1.0f);
            out[i] = c_x0 * x0 + c_xt * xv + c_eps * ev + sigma * z[j];
        }
    }
}

// The next step: *step += 1 (one thread, after every reader of this step in stream order).
extern "C" __global__ void sampler_advance(int* step) {
    if (blockIdx.x == 0 && threadIdx.x == 0) step[0] += 1;
}
