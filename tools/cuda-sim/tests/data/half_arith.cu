#include <cuda_bf16.h>
#include <cuda_fp16.h>
extern "C" __global__ void h(__nv_bfloat162* a, __half2* b, __half* c, __nv_bfloat16* e) {
  int t = threadIdx.x;
  a[t] = __hfma2(a[t], a[t+1], a[t+2]); a[t+3] = __hadd2(a[t], a[t+4]); a[t+5] = __hmul2(a[t], a[t+4]);
  b[t] = __hfma2(b[t], b[t+1], b[t+2]); b[t+3] = __hmax2(b[t], b[t+4]);
  c[t] = __hadd(c[t], c[t+1]); c[t+2] = __hmul(c[t], c[t+3]); c[t+4] = __hneg(c[t+5]);
  e[t] = __hfma(e[t], e[t+1], e[t+2]); e[t+3] = __hmin(e[t], e[t+4]);
}
