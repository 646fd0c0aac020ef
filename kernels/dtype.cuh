// Storage types of the memory-bound kernels: each is written once as a template over T (float or bf16) and
// instantiated as extern "C" <name>_f32 / <name>_bf16 kernels. Loads widen to f32, all arithmetic is f32, stores
// round to nearest even (docs/CUDA.md, "Mixed precision").
#pragma once
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float dt_f32(float v) { return v; }
static __device__ __forceinline__ float dt_f32(bf16 v) { return __bfloat162float(v); }

template <typename T> static __device__ __forceinline__ T dt_as(float v);
template <> __device__ __forceinline__ float dt_as<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 dt_as<bf16>(float v) { return __float2bfloat16_rn(v); }
