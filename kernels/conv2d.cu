// conv2d (NCHW input, OIHW weight, stride, asymmetric zero padding) as three implicit GEMMs, f32, with
// shared-memory tiles. No im2col buffer: each tile element is gathered from x / gy on the fly.
//
//   forward  y[co, (n,p)]      = sum_k   W[co, k]            * col[k, (n,p)]       (+ bias[co])
//   dgrad    dx[ci, (n,ih,iw)] = sum_q   W[co, ci, ki, kj]   * gy[n, co, oh, ow]    q = (co, ki, kj), oh = (ih+pt-ki)/s
//   wgrad    dW[co, k]         = sum_(n,p) gy[n, co, p]      * col[k, (n,p)]       (split over (n,p) for parallelism)
//
// with k = (ci, ki, kj) in the weight's own order and col[k, (n, oh, ow)] = x[n, ci, oh*s - pt + ki, ow*s - pl + kj]
// (0 in the padding). One block computes a CONV_BM x CONV_BN output tile with 256 threads, each owning a 4x4
// micro-tile; the reduction runs in steps of CONV_BK, the next step's global loads held in registers while the
// current one is multiplied out of shared memory (gemm_tile.cuh's `tile_loop`, which each kernel hands its own
// gather `load` and tile `store`). Both operand tiles are stored K-major (tile[k][m], tile[k][n]):
// the layout a bf16 mma/wgmma version would also use for its shared-memory operands.

#include "gemm_tile.cuh"

#define CONV_BM TILE_BM
#define CONV_BN TILE_BN
#define CONV_BK TILE_BK
#define CONV_THREADS TILE_THREADS
#define CONV_LD TILE_LD

// The geometry of one conv call; must match `ConvGeom` in src/ops/conv2d/cuda.rs field for field.
struct Conv2dGeom {
    int n, cin, h, w;
    int cout, kh, kw;
    int ho, wo;
    int stride, pad_top, pad_left;
};

// x[n, ci, ih, iw] or 0 outside the image.
static __device__ __forceinline__ float conv2d_x_at(const float* __restrict__ xn, const Conv2dGeom& g, int ci, int ih,
                                                    int iw) {
    bool in = (unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w;
    return in ? __ldg(xn + ((size_t)ci * g.h + ih) * g.w + iw) : 0.0f;
}

// Forward and dgrad tile slots: A loaded K-fast (element t + 256 i of the 64x16 tile: row a_m + 16 i, k a_k), B
// loaded N-fast (element t + 256 i of the 16x64 tile: k b_k + 4 i, column b_n).
static __device__ __forceinline__ void conv2d_store_kn(float (*As)[CONV_LD], float (*Bs)[CONV_LD], const float ra[4],
                                                       const float rb[4], int a_k, int a_m, int b_k, int b_n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        As[a_k][a_m + 16 * i] = ra[i];
        Bs[b_k + 4 * i][b_n] = rb[i];
    }
}

// Forward and dgrad epilogue: the tile's column c (< N) is (item c / per, pixel c % per) and row m (< M) a channel;
// out[item, m, pixel] = value(acc, m).
template <typename Value>
static __device__ __forceinline__ void conv2d_store_nchw(float* __restrict__ out, const float acc[4][4], int m0, int n0,
                                                         int M, int N, int per, int ty, int tx, Value value) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        int c = n0 + tx * 4 + j;
        if (c >= N) break;
        int n = c / per, p = c % per;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int m = m0 + ty * 4 + i;
            if (m < M) out[((size_t)n * M + m) * per + p] = value(acc[i][j], m);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Forward. Grid: (ceil(N*Ho*Wo / BN), ceil(Cout / BM)). A = W [Cout, K] loaded K-fast (row-major, coalesced);
// B = col [K, N*P] loaded N-fast: each thread always loads the same column (n, oh, ow), decomposed once.
extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv2d_forward_f32(const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ bias,
                       int has_bias, float* __restrict__ y, Conv2dGeom g) {
    __shared__ __align__(16) float As[CONV_BK][CONV_LD];
    __shared__ __align__(16) float Bs[CONV_BK][CONV_LD];
    const int khw = g.kh * g.kw;
    const int M = g.cout, K = g.cin * khw, P = g.ho * g.wo, N = g.n * P;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    // A slots: element e = t + 256 i of the 64x16 tile -> row e / 16, k e % 16.
    const int a_k = t % CONV_BK, a_m = t / CONV_BK;  // rows a_m + 16 i
    // B slots: element e = t + 256 i of the 16x64 tile -> k e / 64, column e % 64.
    const int b_n = t % CONV_BN, b_k = t / CONV_BN;  // k rows b_k + 4 i
    const int col = n0 + b_n;
    const bool col_ok = col < N;
    const int cn = col_ok ? col / P : 0, cp = col_ok ? col % P : 0;
    const int ih0 = (cp / g.wo) * g.stride - g.pad_top, iw0 = (cp % g.wo) * g.stride - g.pad_left;
    const float* xn = x + (size_t)cn * g.cin * g.h * g.w;

    float ra[4], rb[4];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int m = m0 + a_m + 16 * i, k = k0 + a_k;
            ra[i] = (m < M && k < K) ? __ldg(wt + (size_t)m * K + k) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int k = k0 + b_k + 4 * i;
            float v = 0.0f;
            if (col_ok && k < K) {
                int ci = k / khw, r = k - ci * khw;
                int ki = r / g.kw, kj = r - ki * g.kw;
                v = conv2d_x_at(xn, g, ci, ih0 + ki, iw0 + kj);
            }
            rb[i] = v;
        }
    };

    float acc[4][4] = {};
    tile_loop(As, Bs, acc, ty, tx, 0, K, load, [&] { conv2d_store_kn(As, Bs, ra, rb, a_k, a_m, b_k, b_n); });

    conv2d_store_nchw(y, acc, m0, n0, M, N, P, ty, tx,
                      [&](float v, int m) { return v + (has_bias ? __ldg(bias + m) : 0.0f); });
}

// ---------------------------------------------------------------------------------------------------------------
// Input gradient, as a gather (no atomics): dx[n, ci, ih, iw] = sum over (co, ki, kj) of W[co, ci, ki, kj] *
// gy[n, co, oh, ow] where oh*s = ih + pt - ki and ow*s = iw + pl - kj land on the output grid.
// Grid: (ceil(N*H*W / BN), ceil(Cin / BM)). GEMM M = Cin, N = n*H*W, K = Cout*kh*kw with q = co*kh*kw + ki*kw + kj.
extern "C" __global__ void __launch_bounds__(CONV_THREADS)
    conv2d_dgrad_f32(const float* __restrict__ gy, const float* __restrict__ wt, float* __restrict__ dx,
                     Conv2dGeom g) {
    __shared__ __align__(16) float As[CONV_BK][CONV_LD];
    __shared__ __align__(16) float Bs[CONV_BK][CONV_LD];
    const int khw = g.kh * g.kw;
    const int HW = g.h * g.w, P = g.ho * g.wo;
    const int M = g.cin, K = g.cout * khw, N = g.n * HW;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    const int a_k = t % CONV_BK, a_m = t / CONV_BK;
    const int b_n = t % CONV_BN, b_k = t / CONV_BN;
    const int col = n0 + b_n;
    const bool col_ok = col < N;
    const int cn = col_ok ? col / HW : 0, cp = col_ok ? col % HW : 0;
    // oh * s = ih + pt - ki: keep the numerators' bases.
    const int oh_base = cp / g.w + g.pad_top, ow_base = cp % g.w + g.pad_left;
    const float* gyn = gy + (size_t)cn * g.cout * P;

    float ra[4], rb[4];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int ci = m0 + a_m + 16 * i, q = k0 + a_k;
            float v = 0.0f;
            if (ci < M && q < K) {
                int co = q / khw, r = q - co * khw;
                v = __ldg(wt + ((size_t)co * g.cin + ci) * khw + r);
            }
            ra[i] = v;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int q = k0 + b_k + 4 * i;
            float v = 0.0f;
            if (col_ok && q < K) {
                int co = q / khw, r = q - co * khw;
                int ki = r / g.kw, kj = r - ki * g.kw;
                int ohs = oh_base - ki, ows = ow_base - kj;
                if (ohs >= 0 && ows >= 0) {
                    int oh = ohs / g.stride, ow = ows / g.stride;
                    if (oh * g.stride == ohs && ow * g.stride == ows && oh < g.ho && ow < g.wo)
                        v = __ldg(gyn + ((size_t)co * g.ho + oh) * g.wo + ow);
                }
            }
            rb[i] = v;
        }
    };

    float acc[4][4] = {};
    tile_loop(As, Bs, acc, ty, tx, 0, K, load, [&] { conv2d_store_kn(As, Bs, ra, rb, a_k, a_m, b_k, b_n); });

    conv2d_store_nchw(dx, acc, m0, n0, M, N, HW, ty, tx, [](float v, int) { return v; });
}

// ---------------------------------------------------------------------------------------------------------------
// Weight gradient: dW[co, k] = sum over r = (n, oh, ow) of gy[n, co, oh, ow] * col[k, r]. The reduction over
// r (N*Ho*Wo, large) is split across gridDim.z: block z covers r in [z*chunk, min(R, (z+1)*chunk)) and writes its
// partial tile to out + z*Cout*K (chunk is a multiple of CONV_BK). With one split `out` is dW itself; otherwise
// conv2d_sum_splits_f32 adds the partials (deterministic, no atomics).
// Grid: (ceil(K / BN), ceil(Cout / BM), splits). Both operands load K-fast (r-fast): consecutive threads read
// consecutive output/input pixels.
// (min 2 blocks per SM: lets ptxas use up to 128 registers; with the default it capped sm_90 at 64 and spilled.)
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2)
    conv2d_wgrad_f32(const float* __restrict__ x, const float* __restrict__ gy, float* __restrict__ out, int chunk,
                     Conv2dGeom g) {
    __shared__ __align__(16) float As[CONV_BK][CONV_LD];
    __shared__ __align__(16) float Bs[CONV_BK][CONV_LD];
    const int khw = g.kh * g.kw;
    const int P = g.ho * g.wo, R = g.n * P;
    const int M = g.cout, N = g.cin * khw;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    const int r_begin = blockIdx.z * chunk, r_end = min(R, r_begin + chunk);
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    // Both tiles: element e = t + 256 i -> reduction index e % 16 (= t % 16), row/column e / 16 (= t/16 + 16 i).
    const int rr = t % CONV_BK, mm = t / CONV_BK;
    // This thread's four weight columns k = n0 + mm + 16 i, decomposed once.
    int b_ci[4], b_ki[4], b_kj[4];
    bool b_ok[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int k = n0 + mm + 16 * i;
        b_ok[i] = k < N;
        int ci = b_ok[i] ? k / khw : 0, r = b_ok[i] ? k - ci * khw : 0;
        b_ci[i] = ci;
        b_ki[i] = r / g.kw;
        b_kj[i] = r - b_ki[i] * g.kw;
    }

    float ra[4], rb[4];
    auto load = [&](int r0) {
        int r = r0 + rr;
        bool r_ok = r < r_end;
        int n = r_ok ? r / P : 0, p = r_ok ? r % P : 0;
        int oh = p / g.wo, ow = p % g.wo;
        const float* gyn = gy + (size_t)n * M * P + p;
        const float* xn = x + (size_t)n * g.cin * g.h * g.w;
        int ih0 = oh * g.stride - g.pad_top, iw0 = ow * g.stride - g.pad_left;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int co = m0 + mm + 16 * i;
            ra[i] = (r_ok && co < M) ? __ldg(gyn + (size_t)co * P) : 0.0f;
            rb[i] = (r_ok && b_ok[i]) ? conv2d_x_at(xn, g, b_ci[i], ih0 + b_ki[i], iw0 + b_kj[i]) : 0.0f;
        }
    };

    auto store = [&] {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            As[rr][mm + 16 * i] = ra[i];
            Bs[rr][mm + 16 * i] = rb[i];
        }
    };
    float acc[4][4] = {};
    if (r_begin < r_end) tile_loop(As, Bs, acc, ty, tx, r_begin, r_end, load, store);

    float* o = out + (size_t)blockIdx.z * M * N;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int co = m0 + ty * 4 + i;
        if (co >= M) break;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int k = n0 + tx * 4 + j;
            if (k < N) o[(size_t)co * N + k] = acc[i][j];
        }
    }
}

// dw[i] = sum over s < splits of partial[s * n + i] (in split order, so the result is deterministic).
extern "C" __global__ void conv2d_sum_splits_f32(const float* __restrict__ partial, float* __restrict__ dw, int n,
                                                 int splits) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partial[(size_t)z * n + i];
    dw[i] = s;
}
