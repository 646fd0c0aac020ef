// Batched row-major GEMM with bf16 operands and f32 accumulation on mma_tile.cuh's tensor-core tile (the fallback
// of backend/cuda_gemm_bf16.rs when cuBLAS is absent): C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], the same
// conventions as gemm.cu's gemm_batched_f32. op(A) stored m-by-k (ta = 0, K-major tile) or k-by-m (ta,
// m-contiguous tile, ldmatrix.trans); op(B) stored k-by-n (tb = 0, n-contiguous tile, ldmatrix.trans) or n-by-k
// (tb, K-major tile). Grid (ceil(N/64), ceil(M/128), batch), 128 threads.
#include "mma_tile.cuh"

#define GEMM_TC_SMEM (TC_STAGES * (128 * (TC_BK + TC_PAD) + 64 * (TC_BK + TC_PAD)))

template <bool TA, bool TB, typename Store>
static __device__ __forceinline__ void gemm_tc_body(bf16_t* smem, const bf16_t* __restrict__ A,
                                                    const bf16_t* __restrict__ B, int M, int N, int K, int lda,
                                                    int ldb, bool vec_a, bool vec_b, Store store) {
    typedef TcTile<128, 64, 2, 2, TA, !TB> T;
    static_assert(T::SMEM <= GEMM_TC_SMEM, "GEMM tile larger than its shared buffer");
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    auto load = [&](bf16_t* as, bf16_t* bs, int kt) {
        const int k0 = kt * TC_BK;
        if (TA)
            tc_load_dense<TC_BK, T::BM, T::A_LD, T::THREADS>(as, A, lda, k0, m0, K, M, vec_a);
        else
            tc_load_dense<T::BM, TC_BK, T::A_LD, T::THREADS>(as, A, lda, m0, k0, M, K, vec_a);
        if (TB)
            tc_load_dense<T::BN, TC_BK, T::B_LD, T::THREADS>(bs, B, ldb, n0, k0, N, K, vec_b);
        else
            tc_load_dense<TC_BK, T::BN, T::B_LD, T::THREADS>(bs, B, ldb, k0, n0, K, N, vec_b);
    };
    float acc[T::MT][T::NT][4] = {};
    tc_mainloop<T>(smem, acc, (K + TC_BK - 1) / TC_BK, load);
    tc_for_each_acc<T>(acc, [&](int r, int c, float v) {
        int m = m0 + r, n = n0 + c;
        if (m < M && n < N) store(m, n, v);
    });
}

template <typename Store>
static __device__ __forceinline__ void gemm_tc_dispatch(bf16_t* smem, const bf16_t* A, const bf16_t* B, int M, int N,
                                                        int K, int lda, int ldb, int ta, int tb, long long stride_a,
                                                        long long stride_b, Store store) {
    A += blockIdx.z * stride_a;
    B += blockIdx.z * stride_b;
    // 16-byte chunks need 8-element-aligned rows in every batch item.
    bool vec_a = (lda & 7) == 0 && (stride_a & 7) == 0, vec_b = (ldb & 7) == 0 && (stride_b & 7) == 0;
    if (ta) {
        if (tb) gemm_tc_body<true, true>(smem, A, B, M, N, K, lda, ldb, vec_a, vec_b, store);
        else gemm_tc_body<true, false>(smem, A, B, M, N, K, lda, ldb, vec_a, vec_b, store);
    } else {
        if (tb) gemm_tc_body<false, true>(smem, A, B, M, N, K, lda, ldb, vec_a, vec_b, store);
        else gemm_tc_body<false, false>(smem, A, B, M, N, K, lda, ldb, vec_a, vec_b, store);
    }
}

// bf16 output: C[m*ldc + n] = bf16(alpha * acc + beta * C).
extern "C" __global__ void __launch_bounds__(128)
    gemm_batched_bf16(const bf16_t* __restrict__ A, const bf16_t* __restrict__ B, bf16_t* __restrict__ C, int M, int N,
                      int K, int lda, int ldb, int ldc, int ta, int tb, long long stride_a, long long stride_b,
                      long long stride_c, float alpha, float beta) {
    __shared__ __align__(16) bf16_t smem[GEMM_TC_SMEM];
    bf16_t* c = C + blockIdx.z * stride_c;
    gemm_tc_dispatch(smem, A, B, M, N, K, lda, ldb, ta, tb, stride_a, stride_b, [&](int m, int n, float v) {
        bf16_t* p = c + (size_t)m * ldc + n;
        *p = f32_to_bf16(alpha * v + (beta != 0.0f ? beta * bf16_to_f32(*p) : 0.0f));
    });
}

// f32 output (weight gradients): C[m*ldc + n] = alpha * acc + beta * C.
extern "C" __global__ void __launch_bounds__(128)
    gemm_batched_f32out_bf16(const bf16_t* __restrict__ A, const bf16_t* __restrict__ B, float* __restrict__ C, int M,
                             int N, int K, int lda, int ldb, int ldc, int ta, int tb, long long stride_a,
                             long long stride_b, long long stride_c, float alpha, float beta) {
    __shared__ __align__(16) bf16_t smem[GEMM_TC_SMEM];
    float* c = C + blockIdx.z * stride_c;
    gemm_tc_dispatch(smem, A, B, M, N, K, lda, ldb, ta, tb, stride_a, stride_b, [&](int m, int n, float v) {
        float* p = c + (size_t)m * ldc + n;
        *p = alpha * v + (beta != 0.0f ? beta * *p : 0.0f);
    });
}
