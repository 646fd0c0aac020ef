// The shared-memory GEMM tile used by conv2d.cu and gemm.cu: a 64x64 output tile per 256-thread block, each thread
// a 4x4 micro-tile, the reduction in steps of 16. Operand tiles are K-major in shared memory (tile[k][m],
// tile[k][n]), with a row pitch of 64 + 4 floats (float4-aligned; spreads K-fast stores over the banks).
// `tile_loop` is the double-buffered reduction loop every user runs; each brings only how it loads and stores.
#ifndef GEMM_TILE_CUH
#define GEMM_TILE_CUH

#define TILE_BM 64
#define TILE_BN 64
#define TILE_BK 16
#define TILE_THREADS 256
#define TILE_LD (TILE_BM + 4)

// acc[i][j] += sum over the tile's k of As[k][ty*4+i] * Bs[k][tx*4+j].
static __device__ __forceinline__ void tile_mma(const float (*As)[TILE_LD], const float (*Bs)[TILE_LD],
                                                float acc[4][4], int ty, int tx) {
#pragma unroll
    for (int k = 0; k < TILE_BK; ++k) {
        float4 a = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
        float4 b = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
        float av[4] = {a.x, a.y, a.z, a.w};
        float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

// The double-buffered reduction over [k_begin, k_end) in steps of TILE_BK, shared by conv2d.cu (forward, dgrad,
// wgrad) and gemm.cu. `load(k0)` reads step k0's operands from global memory into the caller's registers;
// `store()` writes those registers into As / Bs. The next step's loads are issued before the current step is
// multiplied out of shared memory, so their latency hides behind the FMAs. `load(k_begin)` runs even for an
// empty range (the loads bounds-check).
template <typename Load, typename Store>
static __device__ __forceinline__ void tile_loop(float (*As)[TILE_LD], float (*Bs)[TILE_LD], float acc[4][4], int ty,
                                                 int tx, int k_begin, int k_end, Load load, Store store) {
    load(k_begin);
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_BK) {
        store();
        __syncthreads();
        if (k0 + TILE_BK < k_end) load(k0 + TILE_BK);
        tile_mma(As, Bs, acc, ty, tx);
        __syncthreads();
    }
}

#endif
