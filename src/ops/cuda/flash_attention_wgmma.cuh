// The Hopper (sm_90a) kernels of the fused attention for head dim 128: wgmma warpgroup MMAs on 128-byte-swizzled
// shared-memory tiles. flash_attention.cu owns the checks, the backward's first and last passes (D and the cleared
// fp32 dq accumulators; dq from them) and dispatches here when flash_wgmma_supported() says so.
// Depends on kernel_util.cuh (bf16) only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/kernel_util.cuh"

namespace tune::cuda {

// Plain views of the arguments (element strides; T < 2^30).
struct WgmmaFwdParams {
  const bf16 *q, *k, *v;
  const int32_t* doc_start;  // null: one document
  bf16* o;
  float* lse;  // (nH, T), natural log
  int64_t q_stride, k_stride, v_stride, o_stride;
  int T, nH, group;  // group = nH / nKV
  float scale_log2;  // scale * log2(e)
};

struct WgmmaBwdParams {
  const bf16 *q, *k, *v, *d_o;
  const float *lse, *dvec;  // (nH, T): lse (natural log) and D = rowsum(dO * O)
  const int32_t* doc_start;
  float* dq_acc;  // (T, nH, d) fp32, cleared; receives dS K (without scale) by TMA reductions
  bf16 *dk, *dv;
  int64_t q_stride, k_stride, v_stride, o_stride;
  int T, nH, nKV, group;
  float scale, scale_log2;
};

// True where the running device is sm_90 and the head dim is one these kernels take (128).
bool flash_wgmma_supported(int64_t d);
void flash_wgmma_fwd(const WgmmaFwdParams& p, cudaStream_t stream);
// The main backward pass only: dK, dV (stored) and dQ (accumulated into dq_acc).
void flash_wgmma_bwd(const WgmmaBwdParams& p, cudaStream_t stream);

}  // namespace tune::cuda
