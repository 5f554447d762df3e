// Helpers shared by the fused attention kernels (flash_attention.cu, mma.sync; and flash_attention_wgmma.cu,
// Hopper wgmma) beside mma_ptx.cuh's wrappers (ex2 among them): the quad reductions over the four lanes that share
// a row of an MMA fragment, and the backward's query range and per-row staging. Included by those .cu files only.
#pragma once

#include <cstdint>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/mma_ptx.cuh"

namespace tune::cuda::flash {

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Reductions over the four lanes that share a fragment row (lane bits 0-1).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// The end of the queries that see key k_last: the first t > k_last whose document starts after k_last (T when
// none; doc_start (T) is non-decreasing, nullptr for one causal document).
__device__ __forceinline__ int queries_end(const int* doc_start, int k_last, int T) {
  if (!doc_start) return T;
  int lo = k_last + 1, hi = T;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (doc_start[mid] > k_last) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// A forward CTA's query tiles [q0, q0 + BR) (they run backwards in launch order: the tiles with the most keys
// start first) and the key blocks (BC keys each) some row of it sees, [kb_first, kb_last]: keys
// [doc_start[q0], last row] (doc_start is non-decreasing). ds_last: the last row's document start (0 for one
// causal document), for the no-mask test of a key block.
struct FwdTile {
  int q0, kb_first, kb_last, ds_last;
};
template <int BR, int BC>
__device__ __forceinline__ FwdTile fwd_tile(const int* doc_start, int T) {
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BR, q_last = min(q0 + BR, T) - 1;
  return {q0, (doc_start ? doc_start[q0] : 0) / BC, q_last / BC, doc_start ? doc_start[q_last] : 0};
}

// Query row t of head h for the backward, into shared memory asynchronously: its lse and dvec ((nH, T) each) and
// its doc_start (0 for one causal document); a row past T is zero-filled.
__device__ __forceinline__ void stage_query_row(float* s_lse, float* s_dvec, int* s_ds, const float* lse,
                                                const float* dvec, const int* doc_start, int h, int t, int T) {
  const bool ok = t < T;
  const int64_t at = int64_t(h) * T + (ok ? t : 0);
  cp_async4(smem_u32(s_lse), lse + at, ok);
  cp_async4(smem_u32(s_dvec), dvec + at, ok);
  if (doc_start) cp_async4(smem_u32(s_ds), doc_start + (ok ? t : 0), ok);
  else *s_ds = 0;
}

}  // namespace tune::cuda::flash
