// A batched f32 GEMM on row-major matrices, for linear and attention when cuBLAS cannot be loaded (and as a
// second opinion for the selftest): C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b].
// op(A) is M x K with element (i, k) at A[i*lda + k] (ta == 0) or A[k*lda + i] (ta != 0); op(B) is K x N with
// element (k, j) at B[k*ldb + j] (tb == 0) or B[j*ldb + k] (tb != 0); C[i*ldc + j]. Batch b is blockIdx.z, its
// matrices at b * stride_{a,b,c}. Grid: (ceil(N/64), ceil(M/64), batch), 256 threads.
#include "gemm_tile.cuh"

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    gemm_batched_f32(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N,
                     int K, int lda, int ldb, int ldc, int ta, int tb, long long stride_a, long long stride_b,
                     long long stride_c, float alpha, float beta) {
    __shared__ __align__(16) float As[TILE_BK][TILE_LD];
    __shared__ __align__(16) float Bs[TILE_BK][TILE_LD];
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    C += blockIdx.z * stride_c;
    const int m0 = blockIdx.y * TILE_BM, n0 = blockIdx.x * TILE_BN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    // Tile slot e = t + 256 i. Read along whichever index is contiguous in memory: for A that is k unless ta
    // (then m); for B it is n unless tb (then k).
    auto a_slot = [&](int i, int& m, int& k) {
        int e = t + TILE_THREADS * i;
        if (ta) { m = e % TILE_BM; k = e / TILE_BM; } else { k = e % TILE_BK; m = e / TILE_BK; }
    };
    auto b_slot = [&](int i, int& k, int& n) {
        int e = t + TILE_THREADS * i;
        if (tb) { k = e % TILE_BK; n = e / TILE_BK; } else { n = e % TILE_BN; k = e / TILE_BN; }
    };

    float ra[4], rb[4];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int m, k, n;
            a_slot(i, m, k);
            int gm = m0 + m, gk = k0 + k;
            ra[i] = (gm < M && gk < K) ? __ldg(A + (ta ? (size_t)gk * lda + gm : (size_t)gm * lda + gk)) : 0.0f;
            b_slot(i, k, n);
            int gn = n0 + n;
            gk = k0 + k;
            rb[i] = (gn < N && gk < K) ? __ldg(B + (tb ? (size_t)gn * ldb + gk : (size_t)gk * ldb + gn)) : 0.0f;
        }
    };

    auto store = [&] {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            int m, k, n;
            a_slot(i, m, k);
            As[k][m] = ra[i];
            b_slot(i, k, n);
            Bs[k][n] = rb[i];
        }
    };
    float acc[4][4] = {};
    tile_loop(As, Bs, acc, ty, tx, 0, K, load, store);

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty * 4 + i;
        if (m >= M) break;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int n = n0 + tx * 4 + j;
            if (n >= N) break;
            float* c = C + (size_t)m * ldc + n;
            *c = alpha * acc[i][j] + (beta != 0.0f ? beta * *c : 0.0f);
        }
    }
}
