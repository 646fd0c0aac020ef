// The bf16 tensor-core GEMM tile shared by conv2d_tc.cu (forward, dgrad, wgrad) and the bf16 GEMM: a BM x BN
// output tile per block of WM x WN warps, f32 accumulators, mma.sync m16n8k16 (bf16 in, f32 accumulate), operand
// fragments through ldmatrix, the reduction in steps of TC_BK fed by a TC_STAGES-deep cp.async pipeline.
//
// Shared-memory operand tiles are either K-contiguous ("K-major": A as [m][k], B as [n][k], the layouts mma's
// row.col fragments want, read with ldmatrix) or MN-contiguous (A as [k][m], B as [k][n], read with ldmatrix.trans):
// the tile type's AT / BT flags. Each row is padded by 8 bf16 (16 bytes), so the 8 rows one ldmatrix reads fall on
// 8 different 16-byte bank groups (a row pitch of 80, 144 or 272 bytes), without a swizzle.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, t = lane % 4):
//   A (16x16, row): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16x8, col):  b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C (16x8, f32):  c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1]
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i of lane l receives row l/4,
// elements 2(l%4)..+1 of matrix i (with .trans: column l/4, rows 2(l%4)..+1, i.e. the transposed matrix).
//
// Every helper is __forceinline__: the PTX simulator (tools/cuda-sim) has no .func / call.
#ifndef MMA_TILE_CUH
#define MMA_TILE_CUH

typedef unsigned short bf16_t;

#define TC_BK 32     // reduction step of one pipeline stage (two k16 mma steps)
#define TC_STAGES 3  // cp.async stages in flight
#define TC_PAD 8     // bf16 of padding per shared-memory row

template <int BM_, int BN_, int WM_, int WN_, bool AT_, bool BT_>
struct TcTile {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
    static constexpr bool AT = AT_, BT = BT_;
    static constexpr int THREADS = 32 * WM * WN;
    static constexpr int WTM = BM / WM, WTN = BN / WN;  // one warp's tile
    static constexpr int MT = WTM / 16, NT = WTN / 8;   // its mma tiles
    static constexpr int A_LD = (AT ? BM : TC_BK) + TC_PAD;
    static constexpr int B_LD = (BT ? BN : TC_BK) + TC_PAD;
    static constexpr int A_STAGE = (AT ? TC_BK : BM) * A_LD;
    static constexpr int B_STAGE = (BT ? TC_BK : BN) * B_LD;
    static constexpr int SMEM = TC_STAGES * (A_STAGE + B_STAGE);  // bf16 elements
    static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be a multiple of 16x16");
};

static __device__ __forceinline__ float bf16_to_f32(bf16_t v) { return __uint_as_float((unsigned)v << 16); }

// Round to nearest even (cvt.rn), as the CPU reference's half::bf16::from_f32.
static __device__ __forceinline__ bf16_t f32_to_bf16(float v) {
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}

static __device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, asynchronously; the first `bytes` (0..16) come from src, the rest is zero-filled
// (0 reads nothing: padding and out-of-range chunks).
static __device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void ldsm_x4(unsigned r[4], const bf16_t* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
static __device__ __forceinline__ void ldsm_x4_trans(unsigned r[4], const bf16_t* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// c += a · b on one m16n8k16 tile.
static __device__ __forceinline__ void mma_bf16_16816(float c[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// 8 bf16 values as one 16-byte shared-memory store (st.shared.v4.u32).
static __device__ __forceinline__ void st_shared8(bf16_t* dst, const bf16_t v[8]) {
    uint4 u;
    u.x = v[0] | ((unsigned)v[1] << 16);
    u.y = v[2] | ((unsigned)v[3] << 16);
    u.z = v[4] | ((unsigned)v[5] << 16);
    u.w = v[6] | ((unsigned)v[7] << 16);
    *reinterpret_cast<uint4*>(dst) = u;
}

// Elements src[0..valid) (valid in 0..8) then zeros into 16 bytes of shared memory. vec: src is 16-byte aligned,
// one cp.async; else element by element (a row pitch that is not a multiple of 8, e.g. the 3-channel convs).
// `any` is a valid global pointer handed to the zero-byte copies.
static __device__ __forceinline__ void tc_load8(bf16_t* dst, const bf16_t* src, int valid, bool vec, const bf16_t* any) {
    if (vec) {
        cp_async16(dst, valid > 0 ? src : any, 2 * valid);
    } else {
        bf16_t v[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = e < valid ? src[e] : (bf16_t)0;
        st_shared8(dst, v);
    }
}

// A ROWS x COLS tile (COLS contiguous, pitch LD) of a dense row-major matrix: element (r, c) at src[r*ld + c],
// valid for r < nrows, c < ncols (zeros elsewhere), tile origin (r0, c0). vec: ld and src 16-byte aligned.
template <int ROWS, int COLS, int LD, int THREADS>
static __device__ __forceinline__ void tc_load_dense(bf16_t* s, const bf16_t* __restrict__ src, long long ld, int r0,
                                                     int c0, int nrows, int ncols, bool vec) {
    constexpr int CPR = COLS / 8, CHUNKS = ROWS * CPR;
    static_assert(CHUNKS % THREADS == 0, "tile chunks must divide among the threads");
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; ++i) {
        int c = threadIdx.x + THREADS * i;
        int r = c / CPR, cc = (c % CPR) * 8;
        int gr = r0 + r, gc = c0 + cc;
        int valid = gr < nrows ? min(max(ncols - gc, 0), 8) : 0;
        tc_load8(s + r * LD + cc, src + (valid > 0 ? gr * ld + gc : 0), valid, vec, src);
    }
}

// acc += the stage's A (BM x TC_BK) times B (TC_BK x BN), this warp's WTM x WTN part. Only the block tile's first
// m_valid rows and n_valid columns are ever stored; with FINE, the warp's mma tiles (and their ldmatrix loads) wholly
// past them are skipped (warp-uniform branches; the skipped accumulators stay zero and unread), so a partial edge
// tile (a batch-1 4x4 level, a 3-channel output conv) issues only the mma that touch real outputs. Without FINE the
// caller skips whole warps only (tc_mainloop): the per-tile branches cost the weight gradient registers (ptxas, sm_90:
// 40 bytes of spills at its 128-register bound).
template <class T, bool FINE>
static __device__ __forceinline__ void tc_stage_mma(const bf16_t* As, const bf16_t* Bs, float (&acc)[T::MT][T::NT][4],
                                                    int wm, int wn, int lane, int m_valid, int n_valid) {
#pragma unroll
    for (int kk = 0; kk < TC_BK; kk += 16) {
        unsigned a[T::MT][4], b[T::NT][2];
#pragma unroll
        for (int mt = 0; mt < T::MT; ++mt) {
            int m0 = wm * T::WTM + mt * 16;
            if (FINE && m0 >= m_valid) continue;
            if (T::AT) {
                // Matrices (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15) -> a0..a3.
                int k = kk + (lane & 7) + ((lane >> 4) << 3), m = m0 + ((lane >> 3) & 1) * 8;
                ldsm_x4_trans(a[mt], As + k * T::A_LD + m);
            } else {
                // Matrices (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15) -> a0..a3.
                int m = m0 + (lane & 15), k = kk + (lane >> 4) * 8;
                ldsm_x4(a[mt], As + m * T::A_LD + k);
            }
        }
#pragma unroll
        for (int np = 0; np < T::NT / 2; ++np) {
            int n0 = wn * T::WTN + np * 16;
            if (FINE && n0 >= n_valid) continue;
            unsigned r[4];
            if (T::BT) {
                // Matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
                int k = kk + (lane & 15), n = n0 + (lane >> 4) * 8;
                ldsm_x4_trans(r, Bs + k * T::B_LD + n);
            } else {
                // Matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
                int n = n0 + (lane & 7) + ((lane >> 4) << 3), k = kk + ((lane >> 3) & 1) * 8;
                ldsm_x4(r, Bs + n * T::B_LD + k);
            }
            b[2 * np][0] = r[0];
            b[2 * np][1] = r[1];
            b[2 * np + 1][0] = r[2];
            b[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < T::NT; ++nt)
                if (!FINE || (wm * T::WTM + mt * 16 < m_valid && wn * T::WTN + nt * 8 < n_valid))
                    mma_bf16_16816(acc[mt][nt], a[mt], b[nt]);
    }
}

// The pipelined reduction over k_tiles steps: `load(as, bs, kt)` fills stage buffers as / bs with step kt's tiles
// (cp.async, or plain shared stores for the element-wise paths); TC_STAGES - 1 steps are in flight while one is
// multiplied. The stage a load overwrites was last read in the previous iteration, before this iteration's barrier.
// m_valid / n_valid: how many of the block tile's rows / columns are real outputs; a warp whose tile lies wholly past
// them multiplies nothing, and with FINE the others skip their empty mma tiles (tc_stage_mma).
template <class T, bool FINE = false, class Load>
static __device__ __forceinline__ void tc_mainloop(bf16_t* smem, float (&acc)[T::MT][T::NT][4], int k_tiles, Load load,
                                                   int m_valid = T::BM, int n_valid = T::BN) {
    bf16_t* As = smem;
    bf16_t* Bs = smem + TC_STAGES * T::A_STAGE;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / T::WN, wn = warp % T::WN;
#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
        if (s < k_tiles) load(As + s * T::A_STAGE, Bs + s * T::B_STAGE, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
        cp_async_wait<TC_STAGES - 2>();
        __syncthreads();
        int nk = kt + TC_STAGES - 1;
        if (nk < k_tiles) {
            int s = nk % TC_STAGES;
            load(As + s * T::A_STAGE, Bs + s * T::B_STAGE, nk);
        }
        cp_async_commit();
        int s = kt % TC_STAGES;
        if (wm * T::WTM < m_valid && wn * T::WTN < n_valid)
            tc_stage_mma<T, FINE>(As + s * T::A_STAGE, Bs + s * T::B_STAGE, acc, wm, wn, lane, m_valid, n_valid);
    }
    cp_async_wait<0>();
}

// f(row, col, value) for every accumulator of this thread, (row, col) inside the block's BM x BN tile.
template <class T, class F>
static __device__ __forceinline__ void tc_for_each_acc(const float (&acc)[T::MT][T::NT][4], F f) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / T::WN, wn = warp % T::WN;
#pragma unroll
    for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < T::NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                int r = wm * T::WTM + mt * 16 + (lane >> 2) + (j >> 1) * 8;
                int c = wn * T::WTN + nt * 8 + (lane & 3) * 2 + (j & 1);
                f(r, c, acc[mt][nt][j]);
            }
}

#endif
