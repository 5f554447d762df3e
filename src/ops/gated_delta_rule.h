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
}  // namespace cpu

}  // namespace tune
