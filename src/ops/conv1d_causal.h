// Depthwise causal convolution over time (the short conv of Gated DeltaNet): each channel c has its own kernel of
// K taps, and position t reads positions t-K+1 .. t of the same channel:
//   y[t, c] = sum_{k<K} w[c, k] * x[t - K + 1 + k, c]
// Positions before the document start read zero (left zero padding, as transformers' causal conv1d with K-1 pad).
// Packed rows: `doc_start[t]` is the first position of t's document (as in attention), so the window never crosses
// a document boundary; a null doc_start means one document. No bias and no activation: the caller applies SiLU.
// fwd: x (T, C), w (C, K), doc_start (T) i32 or null -> y (T, C); y must not alias x
// bwd: dy (T, C) -> dx (T, C) overwritten (must not alias dy), dw (C, K) += (optional; the model freezes it)
#pragma once

#include "core/tensor.h"

namespace tune {

void conv1d_causal_fwd(const TensorView& x, const TensorView& w, const TensorView* doc_start, const TensorView& y);
void conv1d_causal_bwd(const TensorView& x, const TensorView& w, const TensorView* doc_start, const TensorView& dy,
                       const TensorView& dx, const TensorView* dw);

namespace cpu {
template <class R>
void conv1d_causal_fwd(const R* x, const R* w, const int32_t* doc_start, R* y, int64_t T, int64_t C, int64_t K);
template <class R>
void conv1d_causal_bwd(const R* x, const R* w, const int32_t* doc_start, const R* dy, R* dx, R* dw, int64_t T,
                       int64_t C, int64_t K);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA). Device pointers; x, y, dy, dx have the element type `dt` and w
// has `wdt` (each f32 or bf16, math in fp32); dw (C, K) is f32 and accumulates (null: not computed). K <= 8.
namespace cuda {
void conv1d_causal_fwd(const void* x, const void* w, const int32_t* doc_start, void* y, int64_t T, int64_t C,
                       int64_t K, DType dt, DType wdt);
void conv1d_causal_bwd(const void* x, const void* w, const int32_t* doc_start, const void* dy, void* dx, float* dw,
                       int64_t T, int64_t C, int64_t K, DType dt, DType wdt);
}  // namespace cuda

}  // namespace tune
