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
}  // namespace cuda

}  // namespace tune
