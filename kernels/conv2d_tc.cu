// conv2d in bf16 on tensor cores (f32 accumulation): three implicit GEMMs on mma_tile.cuh's tile, plus the
// layout kernels around them. Activations arrive and leave NCHW (the Tensor layout); the GEMM operands read
// channels-last (NHWC) copies made by nchw_to_nhwc_bf16, so that a 16-byte cp.async moves 8 consecutive channels
// of one pixel. Weights are packed once per step (conv2d_tc_pack_weight_bf16) into the two K-contiguous layouts
// the forward and the input gradient read.
//
//   forward  y[(n,p), co]      = sum_k  col[(n,p), k] * Wf[co, k]     k = (ki, kj, ci), ci fastest
//   dgrad    dx[(n,ih,iw), ci] = sum_q  dyg[(n,ih,iw), q] * Wd[ci, q]  q = (ki, kj, co): oh*s = ih + pt - ki, only
//            the taps of (ih, iw)'s residue class mod s (one grid z per class: no taps that hit no output pixel)
//   wgrad    dW[co, k]         = sum_r  dy[r, co] * col[r, k]         r = (n, oh, ow), split over gridDim.z
//
// Forward and dgrad tiles: 128 output pixels x 64 channels, 4 warps of 64x32; both operands K-major. The
// epilogues stage the tile in shared memory and write NCHW in runs along the pixels (forward: + bias[co] +
// add_nc[n, co] + residual, rounded once to bf16).
// wgrad: 128 output channels x 64 weight columns with both operands read r-major (ldmatrix.trans).
// Channel counts that are not a multiple of 8 (the 3-channel input and output convs) take element-wise loads.
#include "mma_tile.cuh"

// Must match `ConvGeom` in src/backend/kernels.rs field for field (the same struct as conv2d.cu's Conv2dGeom).
struct Conv2dTcGeom {
    int n, cin, h, w;
    int cout, kh, kw;
    int ho, wo;
    int stride, pad_top, pad_left;
};

typedef TcTile<128, 64, 2, 2, false, false> ConvTcTile;   // forward, dgrad
typedef TcTile<128, 64, 2, 2, true, true> ConvTcWTile;    // wgrad

// The forward and dgrad epilogues stage their 128 x 64 f32 tile in the pipeline's shared memory as [channel][pixel]
// with this pitch: 33 KiB of its 45, and the fragment writes (8 pixels x 4 channel pairs per instruction) fall on 32
// distinct banks.
#define TC_EPI_LD (128 + 4)
static_assert(64 * TC_EPI_LD * 4 <= ConvTcTile::SMEM * 2, "the epilogue tile must fit the pipeline's shared memory");

// v[0..8) = s[0..8) (16-byte aligned f32, two 16-byte shared loads).
static __device__ __forceinline__ void tc_stage_read8(float v[8], const float* s) {
    float4 a = *reinterpret_cast<const float4*>(s), b = *reinterpret_cast<const float4*>(s + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// 8 values rounded to bf16 as one 16-byte global store (dst 16-byte aligned).
static __device__ __forceinline__ void tc_store8(bf16_t* dst, const float v[8]) {
    unsigned w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] = f32_to_bf16(v[2 * e]) | ((unsigned)f32_to_bf16(v[2 * e + 1]) << 16);
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}
// Launch bounds: at most 170 registers for the forward and dgrad (3 blocks per SM, as their 46 KiB of shared memory
// allow 4) and 128 for wgrad (4 per SM): the edge-tile branches of tc_mainloop would otherwise let ptxas take more.

// ---------------------------------------------------------------------------------------------------------------
// out[n, p, c] = in[n, c, p] (bf16, p = h*W + w). Grid (ceil(HW/32), ceil(C/32), N), block (32, 8).
extern "C" __global__ void __launch_bounds__(256)
    nchw_to_nhwc_bf16(const bf16_t* __restrict__ in, bf16_t* __restrict__ out, int c, int hw) {
    __shared__ bf16_t tile[32][33];
    const int n = blockIdx.z, p0 = blockIdx.x * 32, c0 = blockIdx.y * 32;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const bf16_t* src = in + (size_t)n * c * hw;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        int cc = c0 + ty + 8 * j, pp = p0 + tx;
        if (cc < c && pp < hw) tile[ty + 8 * j][tx] = src[(size_t)cc * hw + pp];
    }
    __syncthreads();
    bf16_t* dst = out + (size_t)n * c * hw;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        int pp = p0 + ty + 8 * j, cc = c0 + tx;
        if (cc < c && pp < hw) dst[(size_t)pp * c + cc] = tile[tx][ty + 8 * j];
    }
}

// How many of 0..k-1 are = r (mod s), and how many are < r (mod s) (r in 0..s-1).
static __device__ __forceinline__ int tc_residue_count(int k, int s, int r) { return r < k ? (k - r + s - 1) / s : 0; }
static __device__ __forceinline__ int tc_residue_below(int k, int s, int r) { return (k / s) * r + min(r, k % s); }

// The input-gradient taps in residue-class order: tap (ki, kj) sorted by (ki mod s, kj mod s, ki, kj). The input
// pixels with ih = rh (mod s), iw = rw (mod s) (a "phase") receive exactly the taps of class
// ((rh + pad_top) mod s, (rw + pad_left) mod s), so each phase's taps are one contiguous run of Wd: the first tap of
// class (ph, pw) is below(kh, ph)·kw + count(kh, ph)·below(kw, pw). For stride 1 this is the natural tap order.
static __device__ __forceinline__ int tc_class_start(int kh, int kw, int s, int ph, int pw) {
    return tc_residue_below(kh, s, ph) * kw + tc_residue_count(kh, s, ph) * tc_residue_below(kw, s, pw);
}

// w [Cout, Cin, kh, kw] f32 -> packed bf16: Wf [Cout][kh][kw][Cin] then Wd [Cin][taps in class order][Cout]
// (2*Cout*K values).
extern "C" __global__ void conv2d_tc_pack_weight_bf16(const float* __restrict__ w, bf16_t* __restrict__ packed,
                                                      int cout, int cin, int kh, int kw, int stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int khw = kh * kw, K = cin * khw;
    if (i >= cout * K) return;
    int co = i / K, r = i - co * K, ci = r / khw, tap = r - ci * khw, ki = tap / kw, kj = tap - ki * kw;
    int ph = ki % stride, pw = kj % stride;
    int dtap = tc_class_start(kh, kw, stride, ph, pw) + (ki / stride) * tc_residue_count(kw, stride, pw) + kj / stride;
    bf16_t v = f32_to_bf16(w[i]);
    packed[(size_t)co * K + tap * cin + ci] = v;
    packed[(size_t)cout * K + (size_t)ci * khw * cout + dtap * cout + co] = v;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward. Grid (ceil(N*Ho*Wo / 128), ceil(Cout / 64)), 128 threads. x NHWC, wf = packed Wf [Cout][K].
// bias [Cout], add_nc [N, Cout] (f32) and residual (bf16, NCHW like y) are each optional (null).
extern "C" __global__ void __launch_bounds__(128, 3)
    conv2d_forward_tc_bf16(const bf16_t* __restrict__ x, const bf16_t* __restrict__ wf, const float* __restrict__ bias,
                           const float* __restrict__ add_nc, const bf16_t* __restrict__ residual,
                           bf16_t* __restrict__ y, Conv2dTcGeom g) {
    typedef ConvTcTile T;
    __shared__ __align__(16) bf16_t smem[T::SMEM];
    const int P = g.ho * g.wo, M = g.n * P, K = g.kh * g.kw * g.cin, C = g.cout;
    const int m0 = blockIdx.x * T::BM, n0 = blockIdx.y * T::BN;
    const int t = threadIdx.x;
    const bool vec_x = (g.cin & 7) == 0, vec_w = (K & 7) == 0;

    // A (128 pixels x 32 k): this thread's chunk a_kc of rows a_row + 32 i, each row's pixel decomposed once.
    const int a_kc = t & 3, a_row = t >> 2;
    int ih0[4], iw0[4];
    bool rok[4];
    const bf16_t* xn[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + a_row + 32 * i;
        rok[i] = m < M;
        int mm = rok[i] ? m : 0, n = mm / P, p = mm - n * P;
        ih0[i] = (p / g.wo) * g.stride - g.pad_top;
        iw0[i] = (p % g.wo) * g.stride - g.pad_left;
        xn[i] = x + (size_t)n * g.h * g.w * g.cin;
    }

    auto load = [&](bf16_t* as, bf16_t* bs, int kt) {
        const int k = kt * TC_BK + a_kc * 8;
        if (vec_x) {
            // 8 channels of one tap: k .. k+7 share (ki, kj) since Cin % 8 == 0.
            int tap = k / g.cin, ci = k - tap * g.cin, ki = tap / g.kw, kj = tap - ki * g.kw;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                int ih = ih0[i] + ki, iw = iw0[i] + kj;
                bool ok = rok[i] && k < K && (unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w;
                cp_async16(as + (a_row + 32 * i) * T::A_LD + a_kc * 8,
                           ok ? xn[i] + ((size_t)ih * g.w + iw) * g.cin + ci : x, ok ? 16 : 0);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                bf16_t v[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    int kk = k + e;
                    bf16_t val = 0;
                    if (rok[i] && kk < K) {
                        int tap = kk / g.cin, ci = kk - tap * g.cin, ki = tap / g.kw, kj = tap - ki * g.kw;
                        int ih = ih0[i] + ki, iw = iw0[i] + kj;
                        if ((unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w)
                            val = xn[i][((size_t)ih * g.w + iw) * g.cin + ci];
                    }
                    v[e] = val;
                }
                st_shared8(as + (a_row + 32 * i) * T::A_LD + a_kc * 8, v);
            }
        }
        tc_load_dense<T::BN, TC_BK, T::B_LD, T::THREADS>(bs, wf, K, n0, kt * TC_BK, C, K, vec_w);
    };

    float acc[T::MT][T::NT][4] = {};
    tc_mainloop<T, true>(smem, acc, (K + TC_BK - 1) / TC_BK, load, min(T::BM, M - m0), min(T::BN, C - n0));

    // Epilogue through shared memory: acc + bias + add_nc (f32) staged as [channel][pixel], then each thread adds the
    // residual to 8 consecutive pixels of one channel, rounds them once and stores them as one 16-byte run of y (NCHW;
    // a warp writes two channels' 256 contiguous bytes), element by element where P is not a multiple of 8. The same
    // f32 additions in the same order as in registers, so the same bits.
    float* stage = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is done with the pipeline's stages
    tc_for_each_acc<T>(acc, [&](int r, int c, float v) {
        int m = m0 + r, co = n0 + c;
        if (m < M && co < C) {
            if (bias) v += bias[co];
            if (add_nc) v += add_nc[(size_t)(m / P) * C + co];
        }
        stage[c * TC_EPI_LD + r] = v;
    });
    __syncthreads();
    const bool vec_out = (P & 7) == 0;
    for (int i = t; i < T::BN * (T::BM / 8); i += T::THREADS) {
        int c = i / (T::BM / 8), r = (i - c * (T::BM / 8)) * 8, co = n0 + c, m = m0 + r;
        if (co >= C || m >= M) continue;
        float v[8];
        tc_stage_read8(v, stage + c * TC_EPI_LD + r);
        if (vec_out) {
            // 8 pixels of one image (P and m0 are multiples of 8, so M is too): 16-byte aligned in y and residual.
            int n = m / P, p = m - n * P;
            size_t o = ((size_t)n * C + co) * P + p;
            if (residual) {
                uint4 u = *reinterpret_cast<const uint4*>(residual + o);
                const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                for (int e = 0; e < 8; ++e) v[e] += bf16_to_f32((bf16_t)(w[e / 2] >> (16 * (e & 1))));
            }
            tc_store8(y + o, v);
        } else {
            for (int e = 0; e < 8 && m + e < M; ++e) {
                int n = (m + e) / P, p = (m + e) - n * P;
                size_t o = ((size_t)n * C + co) * P + p;
                float x = v[e];
                if (residual) x += bf16_to_f32(residual[o]);
                y[o] = f32_to_bf16(x);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Input gradient, a gather (no atomics), one phase per blockIdx.z = rh * s + rw: the input pixels (n, ih, iw) with
// ih = rh + s·a, iw = rw + s·b. Such a pixel reads exactly the taps ki = ph + s·ti, kj = pw + s·tj (ph, pw its tap
// class, tc_class_start) from output pixel (a + bh − ti, b + bw − tj), so its reduction runs over that class's
// taps only, q = (ti, tj, co), contiguous in the packed Wd: a stride-s conv skips the (s² − 1)/s² of the taps that
// would multiply zeros. Per tap, the same products are summed in the same order as over all taps (the skipped ones
// added only zeros), so with Cout a multiple of 16 (each mma k-step inside one tap) the result is unchanged.
// Grid (ceil(N*ceil(H/s)*ceil(W/s) / 128), ceil(Cin / 64), s*s), 128 threads; a block past its phase's pixels returns.
// dy NHWC [N, Ho, Wo, Cout], w_packed = Wf then Wd [Cin][kh*kw*Cout] (this kernel reads Wd); dx NCHW.
extern "C" __global__ void __launch_bounds__(128, 3)
    conv2d_dgrad_tc_bf16(const bf16_t* __restrict__ dy, const bf16_t* __restrict__ w_packed,
                         bf16_t* __restrict__ dx, Conv2dTcGeom g) {
    typedef ConvTcTile T;
    __shared__ __align__(16) bf16_t smem[T::SMEM];
    const int s = g.stride, rh = blockIdx.z / s, rw = blockIdx.z - rh * s;
    const int hp = tc_residue_count(g.h, s, rh), wp = tc_residue_count(g.w, s, rw);  // the phase's rows, columns
    const int HWp = hp * wp, M = g.n * HWp, C = g.cin;
    const int m0 = blockIdx.x * T::BM, n0 = blockIdx.y * T::BN;
    if (m0 >= M) return;  // the whole block: this phase has fewer pixels than the largest
    const int ph = (rh + g.pad_top) % s, pw = (rw + g.pad_left) % s, bh = (rh + g.pad_top) / s,
              bw = (rw + g.pad_left) / s;
    const int ntw = tc_residue_count(g.kw, s, pw);
    const int K = g.kh * g.kw * g.cout, Kp = tc_residue_count(g.kh, s, ph) * ntw * g.cout;
    const bf16_t* wd = w_packed + (size_t)g.cin * K + (size_t)tc_class_start(g.kh, g.kw, s, ph, pw) * g.cout;
    const int P = g.ho * g.wo;
    const int t = threadIdx.x;
    const bool vec_y = (g.cout & 7) == 0;  // then K and every class start are multiples of 8 too

    const int a_kc = t & 3, a_row = t >> 2;
    int ohb[4], owb[4];  // oh = ohb - ti, ow = owb - tj
    bool rok[4];
    const bf16_t* dyn[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + a_row + 32 * i;
        rok[i] = m < M;
        int mm = rok[i] ? m : 0, n = mm / HWp, p = mm - n * HWp;
        ohb[i] = p / wp + bh;
        owb[i] = p % wp + bw;
        dyn[i] = dy + (size_t)n * P * g.cout;
    }
    // The output pixel (oh, ow) that class tap (ti, tj) of row i reads, or -1 off the output grid.
    auto src_pixel = [&](int i, int ti, int tj) {
        int oh = ohb[i] - ti, ow = owb[i] - tj;
        if ((unsigned)oh >= (unsigned)g.ho || (unsigned)ow >= (unsigned)g.wo) return -1;
        return oh * g.wo + ow;
    };

    auto load = [&](bf16_t* as, bf16_t* bs, int kt) {
        const int q = kt * TC_BK + a_kc * 8;
        if (vec_y) {
            int tap = q / g.cout, co = q - tap * g.cout, ti = tap / ntw, tj = tap - ti * ntw;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                int op = rok[i] && q < Kp ? src_pixel(i, ti, tj) : -1;
                cp_async16(as + (a_row + 32 * i) * T::A_LD + a_kc * 8,
                           op >= 0 ? dyn[i] + (size_t)op * g.cout + co : dy, op >= 0 ? 16 : 0);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                bf16_t v[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    int qq = q + e;
                    bf16_t val = 0;
                    if (rok[i] && qq < Kp) {
                        int tap = qq / g.cout, co = qq - tap * g.cout, ti = tap / ntw, tj = tap - ti * ntw;
                        int op = src_pixel(i, ti, tj);
                        if (op >= 0) val = dyn[i][(size_t)op * g.cout + co];
                    }
                    v[e] = val;
                }
                st_shared8(as + (a_row + 32 * i) * T::A_LD + a_kc * 8, v);
            }
        }
        tc_load_dense<T::BN, TC_BK, T::B_LD, T::THREADS>(bs, wd, K, n0, kt * TC_BK, C, Kp, vec_y);
    };

    float acc[T::MT][T::NT][4] = {};
    tc_mainloop<T, true>(smem, acc, (Kp + TC_BK - 1) / TC_BK, load, min(T::BM, M - m0), min(T::BN, C - n0));

    // Epilogue through shared memory ([channel][phase pixel], f32), then stores along the pixels: at stride 1 (one
    // phase, the plane's pixels in order) 8 consecutive pixels of one channel as one 16-byte run where H·W is a
    // multiple of 8; else one pixel per thread with consecutive threads on consecutive phase pixels (s apart).
    float* stage = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is done with the pipeline's stages
    tc_for_each_acc<T>(acc, [&](int r, int c, float v) { stage[c * TC_EPI_LD + r] = v; });
    __syncthreads();
    const int HW = g.h * g.w;
    if (s == 1 && (HW & 7) == 0) {
        for (int i = t; i < T::BN * (T::BM / 8); i += T::THREADS) {
            int c = i / (T::BM / 8), r = (i - c * (T::BM / 8)) * 8, ci = n0 + c, m = m0 + r;
            if (ci >= C || m >= M) continue;
            float v[8];
            tc_stage_read8(v, stage + c * TC_EPI_LD + r);
            int n = m / HW, p = m - n * HW;  // 8 pixels of one image, 16-byte aligned
            tc_store8(dx + ((size_t)n * C + ci) * HW + p, v);
        }
    } else {
        for (int i = t; i < T::BN * T::BM; i += T::THREADS) {
            int c = i / T::BM, r = i - c * T::BM, ci = n0 + c, m = m0 + r;
            if (ci >= C || m >= M) continue;
            int n = m / HWp, p = m - n * HWp, ih = rh + s * (p / wp), iw = rw + s * (p % wp);
            dx[((size_t)n * C + ci) * HW + (size_t)ih * g.w + iw] = f32_to_bf16(stage[c * TC_EPI_LD + r]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Weight gradient, packed order: out[z, co, k] = sum over r in split z of dy[r, co] * col[r, k], k = (ki, kj, ci).
// Grid (ceil(K / 64), ceil(Cout / 128), splits), 128 threads; split z covers r in [z*chunk, min(R, (z+1)*chunk))
// (chunk a multiple of TC_BK). x and dy NHWC. conv2d_tc_wgrad_sum_f32 then adds the splits in order and reorders.
extern "C" __global__ void __launch_bounds__(128, 4)
    conv2d_wgrad_tc_bf16(const bf16_t* __restrict__ x, const bf16_t* __restrict__ dy, float* __restrict__ out,
                         int chunk, Conv2dTcGeom g) {
    typedef ConvTcWTile T;
    __shared__ __align__(16) bf16_t smem[T::SMEM];
    const int P = g.ho * g.wo, R = g.n * P, M = g.cout, N = g.kh * g.kw * g.cin;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    const int r_begin = blockIdx.z * chunk, r_end = min(R, r_begin + chunk);
    const int t = threadIdx.x;
    const bool vec_y = (g.cout & 7) == 0, vec_x = (g.cin & 7) == 0;

    // B (32 r x 64 k): this thread's chunk b_kc (8 columns, one tap when vec_x) of rows b_row + 16 i.
    const int b_kc = t & 7, b_row = t >> 3;
    const int k8 = n0 + b_kc * 8;
    const int tap8 = k8 / g.cin, ci8 = k8 - tap8 * g.cin, ki8 = tap8 / g.kw, kj8 = tap8 - ki8 * g.kw;

    auto load = [&](bf16_t* as, bf16_t* bs, int kt) {
        const int rt = r_begin + kt * TC_BK;
        tc_load_dense<TC_BK, T::BM, T::A_LD, T::THREADS>(as, dy, M, rt, m0, r_end, M, vec_y);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            int row = b_row + 16 * i, r = rt + row;
            bool rok = r < r_end;
            int rr = rok ? r : 0, n = rr / P, p = rr - n * P;
            int ihb = (p / g.wo) * g.stride - g.pad_top, iwb = (p % g.wo) * g.stride - g.pad_left;
            const bf16_t* xn = x + (size_t)n * g.h * g.w * g.cin;
            bf16_t* dst = bs + row * T::B_LD + b_kc * 8;
            if (vec_x) {
                int ih = ihb + ki8, iw = iwb + kj8;
                bool ok = rok && k8 < N && (unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w;
                cp_async16(dst, ok ? xn + ((size_t)ih * g.w + iw) * g.cin + ci8 : x, ok ? 16 : 0);
            } else {
                bf16_t v[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    int k = k8 + e;
                    bf16_t val = 0;
                    if (rok && k < N) {
                        int tap = k / g.cin, ci = k - tap * g.cin, ki = tap / g.kw, kj = tap - ki * g.kw;
                        int ih = ihb + ki, iw = iwb + kj;
                        if ((unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w)
                            val = xn[((size_t)ih * g.w + iw) * g.cin + ci];
                    }
                    v[e] = val;
                }
                st_shared8(dst, v);
            }
        }
    };

    float acc[T::MT][T::NT][4] = {};
    int k_tiles = r_begin < r_end ? (r_end - r_begin + TC_BK - 1) / TC_BK : 0;
    tc_mainloop<T>(smem, acc, k_tiles, load, min(T::BM, M - m0), min(T::BN, N - n0));

    float* o = out + (size_t)blockIdx.z * M * N;
    tc_for_each_acc<T>(acc, [&](int r, int c, float v) {
        int co = m0 + r, k = n0 + c;
        if (co < M && k < N) o[(size_t)co * N + k] = v;
    });
}

// dw[co, ci, tap] = sum over z < splits of partial[z, co, tap*Cin + ci], in split order (deterministic).
extern "C" __global__ void conv2d_tc_wgrad_sum_f32(const float* __restrict__ partial, float* __restrict__ dw, int cout,
                                                   int cin, int khw, int splits) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int K = cin * khw;
    if (i >= cout * K) return;
    int co = i / K, r = i - co * K, ci = r / khw, tap = r - ci * khw;
    size_t src = (size_t)co * K + tap * cin + ci, step = (size_t)cout * K;
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partial[src + z * step];
    dw[i] = s;
}

// db[c] = sum over (n, p) of dy[n, c, p] (NCHW bf16), one 256-thread block per channel; each thread sums a fixed
// stride of terms, then a fixed tree: deterministic.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_tc_bias_grad_bf16(const bf16_t* __restrict__ dy, float* __restrict__ db, int n, int c, int p) {
    __shared__ float part[256];
    const int ch = blockIdx.x, t = threadIdx.x;
    float s = 0.0f;
    for (int i = t; i < n * p; i += 256) {
        int ni = i / p, pi = i - ni * p;
        s += bf16_to_f32(dy[((size_t)ni * c + ch) * p + pi]);
    }
    part[t] = s;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (t < w) part[t] += part[t + w];
        __syncthreads();
    }
    if (t == 0) db[ch] = part[0];
}

