// SwiGLU gate: h = silu(g) * u, silu(g) = g * sigmoid(g).
// fwd: g (T, I), u (T, I) -> h (T, I); h may alias g
// bwd: dh -> dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))), du = dh * silu(g) (both overwritten)
#pragma once

#include "core/tensor.h"

namespace tune {

void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& h);
void swiglu_bwd(const TensorView& g, const TensorView& u, const TensorView& dh, const TensorView& dg,
                const TensorView& du);

namespace cpu {
template <class R>
void swiglu_fwd(const R* g, const R* u, R* h, int64_t n);
template <class R>
void swiglu_bwd(const R* g, const R* u, const R* dh, R* dg, R* du, int64_t n);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA): device pointers, all of the element type `dt` (f32 or bf16).
namespace cuda {
void swiglu_fwd(const void* g, const void* u, void* h, int64_t n, DType dt);
void swiglu_bwd(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n, DType dt);
// The training path's layout, bf16: gu (T, 2I) holds each row's gate then up projection (one fused GEMM), rows
// ldgu apart (0: 2I; the backward's LoRA columns may follow them); fwd -> h (T, I) (rows ldh apart, 0: I; the down
// projection's LoRA columns may sit beside them); bwd: dh (T, I) -> dgu (T, 2I) in gu's layout (overwritten; may
// alias gu); with h given, the forward's h (T, I) too, rows I apart, so that it may alias dh (the backward's
// recompute then skips the forward). I and the strides even.
void swiglu_fused_fwd(const void* gu, void* h, int64_t T, int64_t I, int64_t ldh = 0, int64_t ldgu = 0);
void swiglu_fused_bwd(const void* gu, const void* dh, void* dgu, int64_t T, int64_t I, int64_t ldgu = 0,
                      void* h = nullptr);
}  // namespace cuda

}  // namespace tune
