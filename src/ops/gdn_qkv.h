// Gated DeltaNet's q, k, v from the causal conv output (before SiLU), as the recurrence (gated_delta_rule)
// takes them. conv rows (T) of ld_conv elements hold [q: nK key heads of dk | k: nK key heads of dk |
// v: nV heads of dv]; s = silu(conv). Value head h reads key head kh = h / (nV / nK) (repeat_interleave;
// nV a multiple of nK):
//   q[t,h,:] = s_q[t,kh,:] / sqrt(sum(s_q[t,kh,:]^2) + 1e-6) * dk^-0.5
//   k[t,h,:] = s_k[t,kh,:] / sqrt(sum(s_k[t,kh,:]^2) + 1e-6)
//   v[t,h,:] = s_v[t,h,:]
// fwd: conv (T, ld_conv) -> q, k (T, nV, dk), v (T, nV, dv), contiguous
// bwd: dq, dk (T, nV, dk), dv (T, nV, dv) -> dconv (T, ld_dconv): the gradient w.r.t. conv (through the
//      SiLU), overwritten in its first 2 nK dk + nV dv columns (the rest untouched); a key head's gradient
//      sums over the value heads that read it. Per normalized head x = s r c (r = 1 / sqrt(sum s^2 + 1e-6),
//      c the q scale or 1): ds = c (r dx - s r^3 sum(dx s)), dconv = ds * silu'(conv).
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
template <class R>
void gdn_qkv_fwd(const R* conv, int64_t ld_conv, R* q, R* k, R* v, int64_t T, int64_t nK, int64_t nV,
                 int64_t dk, int64_t dv);
template <class R>
void gdn_qkv_bwd(const R* conv, int64_t ld_conv, const R* dq, const R* dk, const R* dv, R* dconv,
                 int64_t ld_dconv, int64_t T, int64_t nK, int64_t nV, int64_t dk_, int64_t dv_);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA) for the training path: device pointers, all bf16, fp32
// math; dk, dv <= 256; outputs must not alias inputs. `stream` is a cudaStream_t (null: the default stream).
namespace cuda {
void gdn_qkv_fwd(const void* conv, int64_t ld_conv, void* q, void* k, void* v, int64_t T, int64_t nK,
                 int64_t nV, int64_t dk, int64_t dv, void* stream = nullptr);
void gdn_qkv_bwd(const void* conv, int64_t ld_conv, const void* dq, const void* dk, const void* dv,
                 void* dconv, int64_t ld_dconv, int64_t T, int64_t nK, int64_t nV, int64_t dk_, int64_t dv_,
                 void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
