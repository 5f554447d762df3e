// RMSNorm over the last dimension: y = x * r * s, r = 1/sqrt(mean(x^2) + eps), s = w (Qwen2/Qwen3) or 1 + w
// (zero-centred, Qwen3.5). Also used per head for QK-norm by viewing (T, heads, d) as (T*heads, d).
// fwd: x (R, C), w (C) -> y (R, C); y may alias x
// bwd: dy (R, C) -> dx (R, C) overwritten (may alias dy), dw (C) += (optional)
//      dx = r * s*dy - x * r^3 / C * sum(s*dy*x)
#pragma once

#include "core/tensor.h"

namespace tune {

void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, bool zero_centered, const TensorView& y);
void rmsnorm_bwd(const TensorView& x, const TensorView& w, const TensorView& dy, float eps, bool zero_centered,
                 const TensorView& dx, const TensorView* dw);

namespace cpu {
template <class R>
void rmsnorm_fwd(const R* x, const R* w, R eps, bool zero_centered, R* y, int64_t rows, int64_t C);
template <class R>
void rmsnorm_bwd(const R* x, const R* w, const R* dy, R eps, bool zero_centered, R* dx, R* dw, int64_t rows,
                 int64_t C);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA). Device pointers; x, y, dy, dx have the element type `dt` and w
// has `wdt` (each f32 or bf16, math in fp32); dw is f32 and accumulates.
namespace cuda {
// ldy: y's row stride in elements (0: C; the training path leaves LoRA columns beside each row).
void rmsnorm_fwd(const void* x, const void* w, float eps, bool zero_centered, void* y, int64_t rows, int64_t C,
                 DType dt, DType wdt, int64_t ldy = 0);
void rmsnorm_bwd(const void* x, const void* w, const void* dy, float eps, bool zero_centered, void* dx, float* dw,
                 int64_t rows, int64_t C, DType dt, DType wdt);
// The training path's residual-stream backward, bf16 x/dy, f32 w (frozen: no dw): dres (rows, C) f32 +=
// rmsnorm_bwd(x, w, dy), then dres_bf16 = bf16(dres) (the copy the next GEMM reads), rows ldb apart (0: C; the
// LoRA columns of the next input gradient may follow them, left as they are).
void rmsnorm_bwd_residual(const void* x, const float* w, const void* dy, float eps, bool zero_centered, float* dres,
                          void* dres_bf16, int64_t rows, int64_t C, int64_t ldb = 0);
}  // namespace cuda

}  // namespace tune
