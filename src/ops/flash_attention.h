// Fused causal attention for training on CUDA (FlashAttention-2 scheme): bf16 q/k/v/o and gradients, fp32
// scores, softmax and accumulation, grouped-query heads and packed documents. The scalar kernels of
// ops/attention.h stay the reference and serve f32 and the head dims these do not take.
// fwd: q (T, nH, d), k (T, nKV, d), v (T, nKV, d), doc_start (T) i32 or null -> o (T, nH, d), lse (nH, T) f32
// bwd: d_o (T, nH, d), o, lse -> dq (T, nH, d), dk, dv (T, nKV, d), overwritten
// Query head h reads kv head h / (nH / nKV); query t sees keys doc_start[t] <= s <= t (null: one document).
// Rows are `*_stride` elements apart (>= heads * d, a multiple of 8), so q, k and v may be column blocks of one
// fused (T, (nH + 2 nKV) d) buffer; dq/dk/dv use the strides of q/k/v and d_o the stride of o.
// Pointers are device pointers, 16-byte aligned. Defined when built with TUNE_CUDA.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tune::cuda {

struct FlashAttnShape {
  int64_t T;                                       // total tokens (a batch of B rows of S tokens: T = B * S)
  int64_t nH, nKV, d;                              // query heads, kv heads, head dim
  int64_t q_stride, k_stride, v_stride, o_stride;  // elements between consecutive tokens
};

// Head dims the fused kernels handle (64, 128, 256).
bool flash_attention_supported(int64_t d);

// lse[h * T + t] = log sum_s exp(scale q_t . k_s) over the keys t sees (natural log), kept for the backward.
// `stream` is a cudaStream_t (null: the default stream).
void flash_attention_fwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale, void* o,
                         float* lse, const FlashAttnShape& s, void* stream);

// Device scratch the backward needs: fp32 dq accumulators (T, nH, d) and D = rowsum(dO * O) (nH, T). With dq
// null the backward leaves dq as the accumulators at the workspace's start, dq = scale * acc (rows of nH d floats),
// for a consumer that reads them in place of a bf16 dq (qk_norm_rope_bwd's QkNormRope::dq).
size_t flash_attention_bwd_workspace_bytes(const FlashAttnShape& s);
void flash_attention_bwd(const void* q, const void* k, const void* v, const void* o, const void* d_o,
                         const float* lse, const int32_t* doc_start, float scale, void* dq, void* dk, void* dv,
                         void* workspace, const FlashAttnShape& s, void* stream);

}  // namespace tune::cuda
