// The shared-memory GEMM tile used by conv2d.cu and gemm.cu: a 64x64 output tile per 256-thread block, each thread
// a 4x4 micro-tile, the reduction in steps of 16. Operand tiles are K-major in shared memory (tile[k][m],
// tile[k][n]), with a row pitch of 64 + 4 floats (float4-aligned; spreads K-fast stores over the banks).
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

#endif
