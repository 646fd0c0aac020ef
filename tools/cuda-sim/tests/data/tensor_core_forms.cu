#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
extern "C" __global__ void tc(const float* x, __nv_bfloat16* y, unsigned* u, float* o, int n) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ __align__(16) unsigned short sm[64*8];
  int t = threadIdx.x;
  y[t] = __float2bfloat16_rn(x[t]);
  __nv_bfloat162 p = __floats2bfloat162_rn(x[t], x[t+1]);
  ((__nv_bfloat162*)y)[t+64] = p;
  __half h = __float2half_rn(x[t]); o[t+100] = __half2float(h) + __bfloat162float(y[t+3]);
  __half2 hh = __floats2half2_rn(x[t], x[t+2]); ((__half2*)u)[t+200] = hh;
  atomicAdd(o, x[t]); atomicAdd(u, 1u); atomicMax((int*)u+1, t); atomicCAS(u+2, 0u, 5u); atomicExch(u+3, 7u);
  unsigned b = __ballot_sync(0xffffffffu, x[t] > 0); unsigned a = __all_sync(0xffffffffu, x[t] > 1);
  unsigned r = __reduce_add_sync(0xffffffffu, (unsigned)t); unsigned mx = __reduce_max_sync(0xffffffffu, (unsigned)t);
  u[t] = b + a + r + mx + __shfl_up_sync(0xffffffffu, t, 1) + __shfl_sync(0xffffffffu, t, 3);
  sm[t] = t; __syncthreads();
  __pipeline_memcpy_async(dyn + 16*t, x + 4*t, 16); __pipeline_commit(); __pipeline_wait_prior(0);
  unsigned r0, r1, r2, r3;
  unsigned addr = (unsigned)__cvta_generic_to_shared(sm + (t%16)*8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r0),"=r"(r1),"=r"(r2),"=r"(r3) : "r"(addr));
  unsigned q0, q1;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(q0),"=r"(q1) : "r"(addr));
  float d0=0,d1=0,d2=0,d3=0;
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    : "+f"(d0),"+f"(d1),"+f"(d2),"+f"(d3) : "r"(r0),"r"(r1),"r"(r2),"r"(r3),"r"(q0),"r"(q1));
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    : "+f"(d0),"+f"(d1),"+f"(d2),"+f"(d3) : "r"(r0),"r"(r1),"r"(r2),"r"(r3),"r"(q0),"r"(q1));
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    : "+f"(d0),"+f"(d1),"+f"(d2),"+f"(d3) : "r"(r0),"r"(r1),"r"(r2),"r"(r3),"r"(q0),"r"(q1));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(addr), "l"(x + t), "r"(n));
  asm volatile("cp.async.wait_all;");
  o[t] = d0 + d1 + d2 + d3 + ((float*)dyn)[t] + __sinf(x[t]) + __cosf(x[t]) + __log2f(x[t]) + tanhf(x[t]) + __fdividef(x[t], x[t+1]);
  __threadfence(); __syncwarp();
  o[t+1] = __fmul_rz(x[t], x[t+1]) + __fadd_rd(x[t], 1.f) + __fmaf_ru(x[t], x[t], 1.f) + (float)(long long)x[t] + __popc(t) + __clz(t) + __brev(t) + __byte_perm(t, n, 0x3210) + __frcp_rn(x[t]) + (double)x[t] / 3.0 + __fsqrt_rn(x[t]) + (float)__double2int_rz((double)x[t]);
}
