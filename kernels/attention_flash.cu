// Fused single-head attention in bf16 with f32 accumulation, flash-attention style: the T×T scores live only in
// registers. q, k, v, out and their gradients are [B, C, T] (channel-major: a token is a column), lse is [B, T]:
//
//   S = Qᵀ K (unscaled),  P = softmax(scale · S) per query row,  O = V Pᵀ,  lse_i = log Σ_j exp(scale · S_ij).
//
// Every product is mma.sync m16n8k16 (bf16 in, f32 accumulate). A warp owns 16 "rows" (queries in the forward and
// dq kernels, keys in the dk / dv kernels), a CTA 4 warps = FA_BM rows; the other side streams through shared memory
// in blocks of FA_BN tokens with cp.async. Shared tiles keep the global layout ([channel][token], a padded pitch so
// the 8 rows of an ldmatrix fall on distinct banks), so the "channel × token" operands (Qᵀ, K in S = QᵀK) are read
// with ldmatrix.trans and the "token × channel" ones (V in O = P Vᵀ) with plain ldmatrix.
//
// Backward (deterministic, no atomics): D = rowsum(dO ⊙ O) first; then one kernel per block of FA_BM keys streams the
// query blocks, recomputing P = exp(scale · S − lse) and dS = P ⊙ (dP − D) from q, k, v, dO and the saved lse once,
// accumulating dV = Σ_i Pᵀ dO and dK = scale · Σ_i dSᵀ Q in registers and writing that key block's share of dQ,
// dS K, to an f32 scratch; a last kernel adds the key blocks' shares in a fixed order (dQ = scale · Σ_blocks).
// Five T²·C products (S, dP, dV, dK, dQ), each once.
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4): A (16×16) a0 = (g, 2t..2t+1),
// a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..); B (16×8) b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g);
// C (16×8 f32) c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..). Two adjacent C tiles of the scores are one A fragment
// of the next product (the row-wise softmax never leaves the thread's quad).

#include <cuda_bf16.h>

#define FA_WARPS 4
#define FA_THREADS (FA_WARPS * 32)
#define FA_BM (FA_WARPS * 16)  // rows per CTA
#define FA_BN 32               // streamed tokens per block
#define FA_PAD 8               // bf16 per shared row beyond the tile (pitches of 144 / 80 bytes: conflict-free ldmatrix)
#define FA_PM (FA_BM + FA_PAD)
#define FA_PN (FA_BN + FA_PAD)
#define FA_CMAX 256  // largest channel count (the accumulator is FA_CMAX / 8 C fragments)

typedef __nv_bfloat16 fa_bf16;

// The dynamic shared memory of every kernel here (its layout is said at each kernel).
extern __shared__ __align__(16) unsigned char fa_shared[];

static __device__ __forceinline__ unsigned fa_smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

static __device__ __forceinline__ void fa_ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void fa_ldsm_x4_trans(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void fa_mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared; only src_bytes (0 or 16) are read, the rest zero-filled.
static __device__ __forceinline__ void fa_cp_async16(unsigned dst, const void* src, unsigned src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
                 "l"((unsigned long long)__cvta_generic_to_global(src)), "r"(src_bytes)
                 : "memory");
}

static __device__ __forceinline__ void fa_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

static __device__ __forceinline__ void fa_cp_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

static __device__ __forceinline__ unsigned fa_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half
    return *reinterpret_cast<unsigned*>(&v);
}

// Tokens [n0, n0 + N) of every channel of a [C][T] matrix g into shared s ([C][N + FA_PAD]); tokens >= T are zero.
// vec (T % 8 == 0: every 8-token chunk is 16-byte aligned and wholly in or out) uses cp.async, else plain loads.
template <int N, int NT = FA_THREADS>
static __device__ __forceinline__ void fa_load_tile(fa_bf16* s, const fa_bf16* g, int C, int T, int n0, bool vec) {
    constexpr int CHUNKS = N / 8, PITCH = N + FA_PAD;
    const int total = C * CHUNKS;
    if (vec) {
        for (int idx = threadIdx.x; idx < total; idx += NT) {
            const int c = idx / CHUNKS, ch = idx % CHUNKS, n = n0 + ch * 8;
            const bool in = n < T;
            fa_cp_async16(fa_smem(s + c * PITCH + ch * 8), in ? g + (size_t)c * T + n : g, in ? 16u : 0u);
        }
    } else {
        const unsigned short* gs = reinterpret_cast<const unsigned short*>(g);
        for (int idx = threadIdx.x; idx < total; idx += NT) {
            const int c = idx / CHUNKS, ch = idx % CHUNKS, n = n0 + ch * 8;
            unsigned* d = reinterpret_cast<unsigned*>(s + c * PITCH + ch * 8);
#pragma unroll
            for (int e = 0; e < 8; e += 2) {
                const unsigned lo = n + e < T ? gs[(size_t)c * T + n + e] : 0u;
                const unsigned hi = n + e + 1 < T ? gs[(size_t)c * T + n + e + 1] : 0u;
                d[e / 2] = lo | (hi << 16);
            }
        }
    }
}

// Shared s ([C][FA_PM], the CTA's FA_BM tokens from m0) -> tokens [m0, min(m0 + FA_BM, T)) of the [C][T] matrix g.
template <int NT = FA_THREADS>
static __device__ __forceinline__ void fa_store_tile(fa_bf16* g, const fa_bf16* s, int C, int T, int m0, bool vec) {
    constexpr int CHUNKS = FA_BM / 8;
    const int total = C * CHUNKS;
    for (int idx = threadIdx.x; idx < total; idx += NT) {
        const int c = idx / CHUNKS, ch = idx % CHUNKS, n = m0 + ch * 8;
        const fa_bf16* src = s + c * FA_PM + ch * 8;
        if (vec) {
            if (n < T) *reinterpret_cast<uint4*>(g + (size_t)c * T + n) = *reinterpret_cast<const uint4*>(src);
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e)
                if (n + e < T) g[(size_t)c * T + n + e] = src[e];
        }
    }
}

// The warp's 16 rows of an f32 accumulator (16 × C, row = token m0w + row, column = channel), times mul per row,
// as bf16 into shared s ([C][FA_PM]) at tokens m0w..m0w+15.
static __device__ __forceinline__ void fa_stage_acc(fa_bf16* s, const float (&acc)[FA_CMAX / 8][4], const float (&mul)[2],
                                                    int C, int m0w, int lane) {
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int nc = 0; nc < FA_CMAX / 8; ++nc) {
        if (nc * 8 < C) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int c = nc * 8 + 2 * t4 + (e & 1), row = g + 8 * (e >> 1);
                s[c * FA_PM + m0w + row] = __float2bfloat16_rn(acc[nc][e] * mul[e >> 1]);
            }
        }
    }
}

// s (16 × NB, f32, zeroed here) = Xᵀ Y over the C channels: X shared [C][px] (the warp's 16 tokens from column
// x0), Y shared [C][FA_PN] (NB tokens from its first column). Both operands are channel-major, so both are
// ldmatrix.trans. Each score is summed over the channels in the same order whatever NB.
template <int NB = FA_BN>
static __device__ __forceinline__ void fa_scores(float (&s)[NB / 8][4], const fa_bf16* x, int px, int x0,
                                                 const fa_bf16* y, int C, int lane) {
#pragma unroll
    for (int nt = 0; nt < NB / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    const int mat = lane >> 3, r = lane & 7;
    // A = Xᵀ: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
    const unsigned a_addr = fa_smem(x + (r + (mat >> 1) * 8) * px + x0 + (mat & 1) * 8);
    // B = Y for two n-tiles: (k 0-7, tile 0), (k 8-15, tile 0), (k 0-7, tile 1), (k 8-15, tile 1).
    const unsigned b_addr = fa_smem(y + (r + (mat & 1) * 8) * FA_PN + (mat >> 1) * 8);
    for (int kk = 0; kk < C; kk += 16) {
        unsigned a[4];
        fa_ldsm_x4_trans(a, a_addr + kk * px * 2);
#pragma unroll
        for (int p = 0; p < NB / 16; ++p) {
            unsigned b[4];
            fa_ldsm_x4_trans(b, b_addr + (kk * FA_PN + p * 16) * 2);
            fa_mma(s[2 * p], a, b[0], b[1]);
            fa_mma(s[2 * p + 1], a, b[2], b[3]);
        }
    }
}

// The 16 × FA_BN f32 tile s as bf16 A fragments (k = the FA_BN streamed tokens).
static __device__ __forceinline__ void fa_to_a(unsigned (&a)[FA_BN / 16][4], const float (&s)[FA_BN / 8][4]) {
#pragma unroll
    for (int ks = 0; ks < FA_BN / 16; ++ks) {
        a[ks][0] = fa_pack(s[2 * ks][0], s[2 * ks][1]);
        a[ks][1] = fa_pack(s[2 * ks][2], s[2 * ks][3]);
        a[ks][2] = fa_pack(s[2 * ks + 1][0], s[2 * ks + 1][1]);
        a[ks][3] = fa_pack(s[2 * ks + 1][2], s[2 * ks + 1][3]);
    }
}

// acc (16 × C) += A Zᵀ: A the warp's 16 × FA_BN bf16 fragments, Z shared [C][FA_PN] (B[k = token][n = channel] is
// Z's row, so plain ldmatrix).
static __device__ __forceinline__ void fa_accumulate(float (&acc)[FA_CMAX / 8][4], const unsigned (&a)[FA_BN / 16][4],
                                                     const fa_bf16* z, int C, int lane) {
    const int mat = lane >> 3, r = lane & 7;
    // Matrices (channels 0-7, tokens 0-7), (channels 0-7, tokens 8-15), (channels 8-15, 0-7), (8-15, 8-15).
    const unsigned z_addr = fa_smem(z + ((mat >> 1) * 8 + r) * FA_PN + (mat & 1) * 8);
#pragma unroll
    for (int ncp = 0; ncp < FA_CMAX / 16; ++ncp) {
        if (ncp * 16 < C) {
#pragma unroll
            for (int ks = 0; ks < FA_BN / 16; ++ks) {
                unsigned b[4];
                fa_ldsm_x4(b, z_addr + (ncp * 16 * FA_PN + ks * 16) * 2);
                fa_mma(acc[2 * ncp], a[ks], b[0], b[1]);
                fa_mma(acc[2 * ncp + 1], a[ks], b[2], b[3]);
            }
        }
    }
}

static __device__ __forceinline__ float fa_quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

static __device__ __forceinline__ float fa_quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Forward. Grid (ceil(T / FA_BM), B), FA_THREADS threads, dynamic shared memory (C·FA_PM + 2·C·FA_PN)·2 bytes:
// Q tile, one K and one V block. The V block loads while S = QᵀK is computed, the next K block while O += P Vᵀ is.
// out [B, C, T] bf16; lse [B, T] = scale · max_j S_ij + log Σ_j exp(scale · (S_ij − max)).
extern "C" __global__ void __launch_bounds__(FA_THREADS) attention_flash_forward_bf16(
    const fa_bf16* __restrict__ q, const fa_bf16* __restrict__ k, const fa_bf16* __restrict__ v,
    fa_bf16* __restrict__ out, float* __restrict__ lse, int C, int T, float scale) {
    fa_bf16* sq = reinterpret_cast<fa_bf16*>(fa_shared);
    fa_bf16* sk = sq + C * FA_PM;
    fa_bf16* sv = sk + C * FA_PN;
    const int b = blockIdx.y, m0 = blockIdx.x * FA_BM;
    const size_t off = (size_t)b * C * T;
    q += off, k += off, v += off, out += off;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t4 = lane & 3;
    const bool vec = (T & 7) == 0;
    const float scale_log2 = scale * 1.4426950408889634f;

    fa_load_tile<FA_BM>(sq, q, C, T, m0, vec);
    fa_load_tile<FA_BN>(sk, k, C, T, 0, vec);
    fa_cp_commit();

    float acc[FA_CMAX / 8][4];
#pragma unroll
    for (int nc = 0; nc < FA_CMAX / 8; ++nc) acc[nc][0] = acc[nc][1] = acc[nc][2] = acc[nc][3] = 0.0f;
    // Per thread: rows g and g + 8 of the warp's 16: running max of S (unscaled) and this thread's partial sum.
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

    const int blocks = (T + FA_BN - 1) / FA_BN;
    for (int jb = 0; jb < blocks; ++jb) {
        const int n0 = jb * FA_BN;
        fa_cp_wait_all();
        __syncthreads();  // K block jb landed; every warp is done with the previous V block
        fa_load_tile<FA_BN>(sv, v, C, T, n0, vec);
        fa_cp_commit();

        float s[FA_BN / 8][4];
        fa_scores(s, sq, FA_PM, warp * 16, sk, C, lane);
        if (n0 + FA_BN > T) {
#pragma unroll
            for (int nt = 0; nt < FA_BN / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (n0 + nt * 8 + 2 * t4 + (e & 1) >= T) s[nt][e] = -INFINITY;
        }
        // Online softmax: rescale what was accumulated under the old max.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = m_run[r];
#pragma unroll
            for (int nt = 0; nt < FA_BN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fa_quad_max(mx);  // finite: every key block holds at least one key < T
            const float alpha = exp2f((m_run[r] - mx) * scale_log2), base = mx * scale_log2;
            m_run[r] = mx;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < FA_BN / 8; ++nt) {
#pragma unroll
                for (int e = 2 * r; e < 2 * r + 2; ++e) {
                    s[nt][e] = exp2f(fmaf(s[nt][e], scale_log2, -base));
                    sum += s[nt][e];
                }
            }
            l_run[r] = l_run[r] * alpha + sum;
#pragma unroll
            for (int nc = 0; nc < FA_CMAX / 8; ++nc) acc[nc][2 * r] *= alpha, acc[nc][2 * r + 1] *= alpha;
        }
        unsigned pa[FA_BN / 16][4];
        fa_to_a(pa, s);

        fa_cp_wait_all();
        __syncthreads();  // V block jb landed; every warp is done with K block jb
        if (jb + 1 < blocks) {
            fa_load_tile<FA_BN>(sk, k, C, T, n0 + FA_BN, vec);
            fa_cp_commit();
        }
        fa_accumulate(acc, pa, sv, C, lane);
    }

    float inv[2];
    const int g = lane >> 2;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float l = fa_quad_sum(l_run[r]);
        inv[r] = 1.0f / l;
        const int i = m0 + warp * 16 + g + 8 * r;
        if (t4 == 0 && i < T) lse[(size_t)b * T + i] = m_run[r] * scale + logf(l);
    }
    __syncthreads();  // the Q tile becomes the output's staging tile
    fa_stage_acc(sq, acc, inv, C, warp * 16, lane);
    __syncthreads();
    fa_store_tile(out, sq, C, T, m0, vec);
}

// D[b, i] = Σ_c dO[b, c, i] · O[b, c, i] (f32), one thread per (b, i).
extern "C" __global__ void attention_flash_backward_dot_bf16(const fa_bf16* __restrict__ out,
                                                             const fa_bf16* __restrict__ dout, float* __restrict__ d,
                                                             int B, int C, int T) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * T) return;
    const int b = idx / T, i = idx % T;
    const size_t base = (size_t)b * C * T + i;
    float sum = 0.0f;
    for (int c = 0; c < C; ++c)
        sum = fmaf(__bfloat162float(dout[base + (size_t)c * T]), __bfloat162float(out[base + (size_t)c * T]), sum);
    d[idx] = sum;
}

// The backward's key-block kernel. Grid (ceil(T / FA_BM), B), FA_KV_THREADS threads (8 warps), dynamic shared memory
// fa_kv_smem(C) bytes: the K and V tiles [C][FA_PM]; two stages of (Q block, dO block [C][FA_PN], then lse (log2
// units) and D of the block's queries, FA_BN floats each); Pᵀ and dSᵀ of the current query block [FA_BM][FA_PN].
// Per query block of FA_BN:
//   1. warp w computes Sᵀ = KᵀQ and dPᵀ = Vᵀ dO for keys 16·(w % 4).. and queries 16·(w / 4).. (each score once),
//      then Pᵀ (0 past T on either side) and dSᵀ = Pᵀ ⊙ (dPᵀ − D), rounded to bf16 into shared memory;
//   2. warp w accumulates dV += Pᵀ dOᵀ and dK += dSᵀ Qᵀ for keys 16·(w % 4).. and the 16-channel pairs = w / 4
//      (mod 2): two 16 × C/2 f32 accumulators, as many registers as one 16 × C;
//   3. warp w computes the block's dQ share dS K (FA_BN queries × C, reduced over the FA_BM keys) for queries
//      16·(w % 2).. and the channel pairs = w / 2 (mod 4) and stores it, f32, to part[blockIdx.x] [B, C, T].
// Per element, S, dP, P, dS, dV and dK are summed in the same order as by one warp per 16 keys (the products of a
// k-step in channel or query order, the query blocks in order). dK (× scale) and dV are staged through the K and V
// tiles and stored as bf16; attention_flash_backward_dq_sum_bf16 then adds the shares.
#define FA_KV_WARPS 8
#define FA_KV_THREADS (FA_KV_WARPS * 32)

extern "C" __global__ void __launch_bounds__(FA_KV_THREADS) attention_flash_backward_kv_bf16(
    const fa_bf16* __restrict__ q, const fa_bf16* __restrict__ k, const fa_bf16* __restrict__ v,
    const fa_bf16* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ dsum,
    fa_bf16* __restrict__ dk, fa_bf16* __restrict__ dv, float* __restrict__ part, int C, int T, float scale) {
    fa_bf16* sk = reinterpret_cast<fa_bf16*>(fa_shared);
    fa_bf16* sv = sk + C * FA_PM;
    unsigned char* stage0 = reinterpret_cast<unsigned char*>(sv + C * FA_PM);
    const int stage_bytes = 2 * C * FA_PN * 2 + 2 * FA_BN * 4;
    fa_bf16* sp = reinterpret_cast<fa_bf16*>(stage0 + 2 * stage_bytes);  // Pᵀ [FA_BM keys][FA_PN]
    fa_bf16* sds = sp + FA_BM * FA_PN;                                      // dSᵀ
    const int B = gridDim.y, b = blockIdx.y, m0 = blockIdx.x * FA_BM;
    const size_t off = (size_t)b * C * T;
    q += off, k += off, v += off, dout += off, dk += off, dv += off;
    part += ((size_t)blockIdx.x * B + b) * C * T;
    lse += (size_t)b * T, dsum += (size_t)b * T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int mat = lane >> 3, r8 = lane & 7;
    const bool vec = (T & 7) == 0;
    const float scale_log2 = scale * 1.4426950408889634f;
    const int pairs = C / 16;

    auto load_stage = [&](int st, int n0) {
        fa_bf16* s_q = reinterpret_cast<fa_bf16*>(stage0 + st * stage_bytes);
        fa_bf16* s_do = s_q + C * FA_PN;
        float* s_l = reinterpret_cast<float*>(s_do + C * FA_PN);
        fa_load_tile<FA_BN, FA_KV_THREADS>(s_q, q, C, T, n0, vec);
        fa_load_tile<FA_BN, FA_KV_THREADS>(s_do, dout, C, T, n0, vec);
        if (threadIdx.x < FA_BN) {
            const int i = n0 + threadIdx.x;
            s_l[threadIdx.x] = i < T ? lse[i] * 1.4426950408889634f : 0.0f;
            s_l[FA_BN + threadIdx.x] = i < T ? dsum[i] : 0.0f;
        }
    };

    fa_load_tile<FA_BM, FA_KV_THREADS>(sk, k, C, T, m0, vec);
    fa_load_tile<FA_BM, FA_KV_THREADS>(sv, v, C, T, m0, vec);
    load_stage(0, 0);
    fa_cp_commit();

    // Step 1's tile: keys ks0.. (16), queries qs0.. (16) of the block. Step 2's: keys ks0.., channel pairs h, h + 2, ...
    // Step 3's: queries qd0.. (16), channel pairs cg, cg + 4, ...
    const int ks0 = (warp & 3) * 16, qs0 = (warp >> 2) * 16, h = warp >> 2;
    const int qd0 = (warp & 1) * 16, cg = warp >> 1;
    float acc_dv[FA_CMAX / 16][4], acc_dk[FA_CMAX / 16][4];
#pragma unroll
    for (int i = 0; i < FA_CMAX / 16; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_dv[i][e] = acc_dk[i][e] = 0.0f;
    // ldmatrix row addresses: Pᵀ / dSᵀ as A (keys × queries, plain), dSᵀ as A of dS (queries × keys, .trans), the
    // [C][pitch] tiles as B with the channel as n (plain; pitch FA_PN for Q / dO, FA_PM for K).
    const unsigned pa_addr = fa_smem(sp + (ks0 + (lane & 15)) * FA_PN + (lane >> 4) * 8);
    const unsigned da_addr = fa_smem(sds + (ks0 + (lane & 15)) * FA_PN + (lane >> 4) * 8);
    const unsigned dst_addr = fa_smem(sds + ((lane & 7) + ((lane >> 4) << 3)) * FA_PN + qd0 + ((lane >> 3) & 1) * 8);
    const int z_row = (mat >> 1) * 8 + r8, z_col = (mat & 1) * 8;
    const unsigned k_addr = fa_smem(sk + z_row * FA_PM + z_col);

    const int blocks = (T + FA_BN - 1) / FA_BN;
    for (int ib = 0; ib < blocks; ++ib) {
        const int n0 = ib * FA_BN;
        const fa_bf16* s_q = reinterpret_cast<const fa_bf16*>(stage0 + (ib & 1) * stage_bytes);
        const fa_bf16* s_do = s_q + C * FA_PN;
        const float* s_l = reinterpret_cast<const float*>(s_do + C * FA_PN);
        fa_cp_wait_all();
        __syncthreads();  // block ib landed; every warp is done with block ib - 1 (its stage, Pᵀ and dSᵀ)
        if (ib + 1 < blocks) {
            load_stage((ib + 1) & 1, n0 + FA_BN);
            fa_cp_commit();
        }

        // 1. Pᵀ and dSᵀ for (keys ks0.., queries qs0..).
        {
            float p[2][4], dp[2][4];
            fa_scores<16>(p, sk, FA_PM, ks0, s_q + qs0, C, lane);
            fa_scores<16>(dp, sv, FA_PM, ks0, s_do + qs0, C, lane);
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
                float ds[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = qs0 + nt * 8 + 2 * t4 + (e & 1), key = m0 + ks0 + g + 8 * (e >> 1);
                    p[nt][e] = n0 + col < T && key < T ? exp2f(fmaf(p[nt][e], scale_log2, -s_l[col])) : 0.0f;
                    ds[e] = p[nt][e] * (dp[nt][e] - s_l[FA_BN + col]);
                }
                const int col = qs0 + nt * 8 + 2 * t4, row = ks0 + g;
                *reinterpret_cast<unsigned*>(sp + row * FA_PN + col) = fa_pack(p[nt][0], p[nt][1]);
                *reinterpret_cast<unsigned*>(sp + (row + 8) * FA_PN + col) = fa_pack(p[nt][2], p[nt][3]);
                *reinterpret_cast<unsigned*>(sds + row * FA_PN + col) = fa_pack(ds[0], ds[1]);
                *reinterpret_cast<unsigned*>(sds + (row + 8) * FA_PN + col) = fa_pack(ds[2], ds[3]);
            }
        }
        __syncthreads();  // Pᵀ and dSᵀ of the whole block are in shared memory

        // 2. dV += Pᵀ dOᵀ, dK += dSᵀ Qᵀ on this warp's keys and channel pairs.
        {
            unsigned pa[2][4], da[2][4];
#pragma unroll
            for (int ks = 0; ks < 2; ++ks) {
                fa_ldsm_x4(pa[ks], pa_addr + ks * 32);
                fa_ldsm_x4(da[ks], da_addr + ks * 32);
            }
            const unsigned do_addr = fa_smem(s_do + z_row * FA_PN + z_col), q_addr = fa_smem(s_q + z_row * FA_PN + z_col);
#pragma unroll
            for (int i = 0; i < FA_CMAX / 32; ++i) {
                const int ncp = h + 2 * i;
                if (ncp < pairs) {
#pragma unroll
                    for (int ks = 0; ks < 2; ++ks) {
                        unsigned bq[4], bd[4];
                        fa_ldsm_x4(bd, do_addr + (ncp * 16 * FA_PN + ks * 16) * 2);
                        fa_mma(acc_dv[2 * i], pa[ks], bd[0], bd[1]);
                        fa_mma(acc_dv[2 * i + 1], pa[ks], bd[2], bd[3]);
                        fa_ldsm_x4(bq, q_addr + (ncp * 16 * FA_PN + ks * 16) * 2);
                        fa_mma(acc_dk[2 * i], da[ks], bq[0], bq[1]);
                        fa_mma(acc_dk[2 * i + 1], da[ks], bq[2], bq[3]);
                    }
                }
            }
        }

        // 3. This key block's share of dQ for queries qd0.. and channel pairs cg, cg + 4, ...: Σ over the FA_BM keys.
        {
            unsigned a[FA_BM / 16][4];
#pragma unroll
            for (int kk = 0; kk < FA_BM / 16; ++kk) fa_ldsm_x4_trans(a[kk], dst_addr + kk * 16 * FA_PN * 2);
            const int qa = n0 + qd0 + g, qb = qa + 8;
#pragma unroll
            for (int i = 0; i < FA_CMAX / 64; ++i) {
                const int ncp = cg + 4 * i;
                if (ncp < pairs) {
                    float d[2][4] = {};
#pragma unroll
                    for (int kk = 0; kk < FA_BM / 16; ++kk) {
                        unsigned bk[4];
                        fa_ldsm_x4(bk, k_addr + (ncp * 16 * FA_PM + kk * 16) * 2);
                        fa_mma(d[0], a[kk], bk[0], bk[1]);
                        fa_mma(d[1], a[kk], bk[2], bk[3]);
                    }
#pragma unroll
                    for (int j = 0; j < 2; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int c = ncp * 16 + j * 8 + 2 * t4 + (e & 1), qi = e < 2 ? qa : qb;
                            if (qi < T) part[(size_t)c * T + qi] = d[j][e];
                        }
                }
            }
        }
    }

    // dK (× scale) and dV through the K and V tiles, as bf16, then coalesced stores.
    __syncthreads();  // every warp is done with the K and V tiles
    const int row = ks0 + g;
#pragma unroll
    for (int i = 0; i < FA_CMAX / 32; ++i) {
        const int ncp = h + 2 * i;
        if (ncp < pairs) {
#pragma unroll
            for (int j = 0; j < 2; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int c = ncp * 16 + j * 8 + 2 * t4 + (e & 1), rr = row + 8 * (e >> 1);
                    sk[c * FA_PM + rr] = __float2bfloat16_rn(acc_dk[2 * i + j][e] * scale);
                    sv[c * FA_PM + rr] = __float2bfloat16_rn(acc_dv[2 * i + j][e]);
                }
        }
    }
    __syncthreads();
    fa_store_tile<FA_KV_THREADS>(dk, sk, C, T, m0, vec);
    fa_store_tile<FA_KV_THREADS>(dv, sv, C, T, m0, vec);
}

// dq [B, C, T] = scale · Σ over the key blocks kb = 0, 1, ... (in order) of part[kb] [B, C, T]; one thread per value.
extern "C" __global__ void attention_flash_backward_dq_sum_bf16(const float* __restrict__ part, fa_bf16* __restrict__ dq,
                                                                int blocks, int n, float scale) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float sum = 0.0f;
    for (int kb = 0; kb < blocks; ++kb) sum += part[(size_t)kb * n + i];
    dq[i] = __float2bfloat16_rn(sum * scale);
}
