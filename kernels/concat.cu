// Channel concatenation and its backward split. A "part" is one input: outer blocks of `part` values; the "whole"
// is the output: outer blocks of `whole` values, the part's slot starting at `offset` in each. One thread per part
// element; n = outer * part. A plain copy of T (float or bf16, dtype.cuh).
#include "dtype.cuh"

template <typename T>
static __device__ __forceinline__ void concat_in(const T* __restrict__ part_src, T* __restrict__ whole_dst, int n,
                                                 int part, int whole, int offset) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) whole_dst[(long long)(i / part) * whole + offset + i % part] = part_src[i];
}

template <typename T>
static __device__ __forceinline__ void concat_out(const T* __restrict__ whole_src, T* __restrict__ part_dst, int n,
                                                  int part, int whole, int offset) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) part_dst[i] = whole_src[(long long)(i / part) * whole + offset + i % part];
}

extern "C" __global__ void concat_channels_copy_in(const float* __restrict__ part_src, float* __restrict__ whole_dst,
                                                   int n, int part, int whole, int offset) {
    concat_in(part_src, whole_dst, n, part, whole, offset);
}

extern "C" __global__ void concat_channels_copy_in_bf16(const bf16* __restrict__ part_src,
                                                        bf16* __restrict__ whole_dst, int n, int part, int whole,
                                                        int offset) {
    concat_in(part_src, whole_dst, n, part, whole, offset);
}

extern "C" __global__ void concat_channels_split_out(const float* __restrict__ whole_src, float* __restrict__ part_dst,
                                                     int n, int part, int whole, int offset) {
    concat_out(whole_src, part_dst, n, part, whole, offset);
}

extern "C" __global__ void concat_channels_split_out_bf16(const bf16* __restrict__ whole_src,
                                                          bf16* __restrict__ part_dst, int n, int part, int whole,
                                                          int offset) {
    concat_out(whole_src, part_dst, n, part, whole, offset);
}
