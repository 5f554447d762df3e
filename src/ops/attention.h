// Causal scaled dot-product attention with grouped-query heads: query head h reads kv head h / (nH / nKV).
// Packed rows: `doc_start[t]` is the first position of t's document, so t attends to [doc_start[t], t]; a null
// doc_start means one document. Softmax in fp32/double with the max subtracted.
// fwd: q (T, nH, d), k (T, nKV, d), v (T, nKV, d), doc_start (T) i32 or null -> o (T, nH, d)
// bwd: do (T, nH, d) -> dq, dk, dv (overwritten); P is recomputed:
//      dV[s] = sum_t P[t,s] dO[t];  dS = P * (dO.V[s] - sum_s' P dO.V[s']);  dq = scale dS K;  dk = scale dS^T Q
#pragma once

#include "core/tensor.h"

namespace tune {

void attention_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& o);
void attention_bwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& d_o, const TensorView& dq, const TensorView& dk,
                   const TensorView& dv);

namespace cpu {
template <class R>
void attention_fwd(const R* q, const R* k, const R* v, const int32_t* doc_start, R scale, R* o, int64_t T, int64_t nH,
                   int64_t nKV, int64_t d);
template <class R>
void attention_bwd(const R* q, const R* k, const R* v, const int32_t* doc_start, R scale, const R* d_o, R* dq, R* dk,
                   R* dv, int64_t T, int64_t nH, int64_t nKV, int64_t d);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA): device pointers, q/k/v/o and gradients of the element type `dt`
// (f32 or bf16), doc_start i32 or null; head dim d <= kAttentionMaxHeadDim and at least 8 bytes of elements.
namespace cuda {
constexpr int64_t kAttentionMaxHeadDim = 256;
void attention_fwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale, void* o,
                   int64_t T, int64_t nH, int64_t nKV, int64_t d, DType dt);
void attention_bwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale,
                   const void* d_o, void* dq, void* dk, void* dv, int64_t T, int64_t nH, int64_t nKV, int64_t d,
                   DType dt);
}  // namespace cuda

}  // namespace tune
