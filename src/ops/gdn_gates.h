// Gated DeltaNet's per-head gates from the in_proj_b and in_proj_a outputs:
//   beta[t,h] = sigmoid(b[t,h]),  g[t,h] = -exp(A_log[h]) * softplus(a[t,h] + dt_bias[h])
// with torch's softplus (x itself above the threshold 20). g is the log-decay that gated_delta_rule takes.
// fwd: ba rows (T) of ld elements holding b in columns [0, nV) and a in [nV, 2 nV); A_log, dt_bias (nV)
//      -> beta, g (T, nV)
// bwd: dbeta, dg (T, nV) -> dba rows (T) of ld_d elements: db in columns [0, nV), da in [nV, 2 nV)
//      (overwritten; other columns untouched). db = dbeta beta (1 - beta),
//      da = -dg exp(A_log) sigmoid(a + dt_bias) (1 above the threshold). A_log, dt_bias frozen: no gradient.
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
template <class R>
void gdn_gates_fwd(const R* ba, int64_t ld, const R* A_log, const R* dt_bias, R* beta, R* g, int64_t T,
                   int64_t nV);
template <class R>
void gdn_gates_bwd(const R* ba, int64_t ld, const R* A_log, const R* dt_bias, const R* dbeta, const R* dg,
                   R* dba, int64_t ld_d, int64_t T, int64_t nV);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA) for the training path: device pointers; ba and dba bf16,
// A_log, dt_bias, beta, g, dbeta, dg f32; fp32 math. `stream` is a cudaStream_t (null: the default stream).
namespace cuda {
void gdn_gates_fwd(const void* ba, int64_t ld, const float* A_log, const float* dt_bias, float* beta,
                   float* g, int64_t T, int64_t nV, void* stream = nullptr);
void gdn_gates_bwd(const void* ba, int64_t ld, const float* A_log, const float* dt_bias, const float* dbeta,
                   const float* dg, void* dba, int64_t ld_d, int64_t T, int64_t nV, void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
