// The gated delta rule (the recurrence of Gated DeltaNet), per value head h with a state S (dk, dv) that starts at
// zero and is reset to zero at every document start:
//   S   = exp(g[t,h]) * S                        decay (g is the log-decay, <= 0 in the model)
//   u   = beta[t,h] * (v[t,h] - S^T k[t,h])      delta
//   S  += k[t,h] u^T                             rank-1 update
//   o[t,h] = S^T q[t,h]
// The caller prepares q and k: repeated from key heads to value heads, L2-normalized, and q scaled by dk^-0.5; this
// op applies none of that. The state is kept in double for both element types (transformers runs the rule in fp32).
// Packed rows: `doc_start[t]` is the first position of t's document (as in attention); the state resets where
// doc_start[t] == t. A null doc_start means one document.
// fwd: q (T, nV, dk), k (T, nV, dk), v (T, nV, dv), g (T, nV), beta (T, nV), doc_start (T) i32 or null
//      -> o (T, nV, dv)
// bwd: do (T, nV, dv) -> dq, dk (T, nV, dk), dv (T, nV, dv), dg, dbeta (T, nV), all overwritten. The reference
//      recomputes the forward and keeps every state (O(T dk dv) memory per head), then runs the recurrence backward.
#pragma once

#include "core/tensor.h"

namespace tune {

void gated_delta_rule_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& g,
                          const TensorView& beta, const TensorView* doc_start, const TensorView& o);
void gated_delta_rule_bwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& g,
                          const TensorView& beta, const TensorView* doc_start, const TensorView& dout,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv, const TensorView& dg,
                          const TensorView& dbeta);

namespace cpu {
template <class R>
void gated_delta_rule_fwd(const R* q, const R* k, const R* v, const R* g, const R* beta, const int32_t* doc_start,
                          R* o, int64_t T, int64_t nV, int64_t dk, int64_t dv);
template <class R>
void gated_delta_rule_bwd(const R* q, const R* k, const R* v, const R* g, const R* beta, const int32_t* doc_start,
                          const R* dout, R* dq, R* dk, R* dv, R* dg, R* dbeta, int64_t T, int64_t nV, int64_t dk_,
                          int64_t dv_);

// The chunked (WY / UT-transform) form of the forward that the CUDA kernels implement, in chunks of `chunk`
// positions at fixed offsets 0, chunk, 2 chunk, ...; a document may start anywhere inside a chunk. Per head and
// chunk of n positions with S the state at the chunk's start (see the .cpp for the derivation):
//   G = cumsum(g) in the chunk; same(i, j) = t_i and t_j in one document; D_ij = same(i, j) exp(G_i - G_j), j <= i
//   e_i = exp(G_i) if t_i's document began before the chunk, else 0 (the incoming state does not reach t_i)
//   A = strict_lower(diag(beta) K K^T . D),  Tm = (I + A)^-1 (forward substitution)
//   W = Tm diag(beta e) K (n, dk),  U0 = Tm diag(beta) V (n, dv),  u = U0 - W S
//   O = diag(e) Q S + (lower_incl(Q K^T . D)) u
//   S <- e_l S + sum_m D_lm k_m u_m^T   (l = n - 1, the chunk's last position)
template <class R>
void gated_delta_rule_chunked_fwd(const R* q, const R* k, const R* v, const R* g, const R* beta,
                                  const int32_t* doc_start, R* o, int64_t T, int64_t nV, int64_t dk, int64_t dv,
                                  int64_t chunk);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA), the chunked form above with chunks of 64 on the tensor cores
// (bf16 products with fp32 accumulation; fp32 intermediates enter products as two bf16 halves, W in bf16), the
// (I + A)^-1 solve and the (dk, dv) state of each head in fp32; cuda/gated_delta_rule.cu says which pass does what.
// Device pointers; q, k, v, o, d_o, dq, dk, dv are bf16, contiguous (T, nV, d); g, beta, dg, dbeta are f32 (T, nV).
// Head dims dk, dv in {64, 128}. dq, dk, dv, dg, dbeta are overwritten. `stream` is a cudaStream_t (null: the
// default stream).
// Workspace (gated_delta_rule_workspace_bytes): per chunk and head, the forward keeps W, U0, the gates, u and
// the state at the chunk's start (fp32 values as two bf16 planes); the backward adds Tm, dU0, du, the state's
// gradient at the chunk's end, dR and the chunk-local parts of dq, dk, dbeta and dg. At T = 8192, nV = 16,
// dk = dv = 128 that is 289 MiB for the forward and 770 MiB for the backward. The backward recomputes the
// forward's part itself, so the two calls share nothing but the buffer.
namespace cuda {
bool gated_delta_rule_supported(int64_t dk, int64_t dv);
size_t gated_delta_rule_workspace_bytes(int64_t T, int64_t nV, int64_t dk, int64_t dv, bool backward);
void gated_delta_rule_fwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, void* o, void* workspace, int64_t T, int64_t nV, int64_t dk,
                          int64_t dv, void* stream);
void gated_delta_rule_bwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, const void* d_o, void* dq, void* dk, void* dv, float* dg,
                          float* dbeta, void* workspace, int64_t T, int64_t nV, int64_t dk_, int64_t dv_,
                          void* stream);
}  // namespace cuda

}  // namespace tune
