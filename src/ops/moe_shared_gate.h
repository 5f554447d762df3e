// The sigmoid gate of Qwen3.5-MoE's shared expert, per token t of x (T, H) (the FFN's normed input):
//   logit[t] = x[t] . w,  out[t] += sigmoid(logit[t]) ys[t]   (ys: the shared expert's output; a null out
//   computes the logits only)
// bwd: dout (T, H) -> dys[t] = sigmoid(logit[t]) dout[t] (overwritten),
//      dx[t] += sigmoid'(logit[t]) (dout[t] . ys[t]) w (the gate's path into the input; w is frozen).
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
template <class R>
void moe_shared_gate_fwd(const R* x, const R* w, const R* ys, int64_t T, int64_t H, R* logit, R* out);
template <class R>
void moe_shared_gate_bwd(const R* w, const R* ys, const R* logit, const R* dout, int64_t T, int64_t H, R* dys,
                         R* dx);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA), one block per token: x, w (H), ys, out, dout, dys, dx
// bf16, logit f32 (T); fp32 math. `stream` is a cudaStream_t (null: the default stream).
namespace cuda {
void moe_shared_gate_fwd(const void* x, const void* w, const void* ys, int64_t T, int64_t H, float* logit,
                         void* out, void* stream = nullptr);
void moe_shared_gate_bwd(const void* w, const void* ys, const float* logit, const void* dout, int64_t T,
                         int64_t H, void* dys, void* dx, void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
