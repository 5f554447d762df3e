// MoE routing: p = softmax(logits) over all E experts, keep the top k (highest first, ties to the lower index),
// optionally renormalize the kept ones to sum to 1 (then they equal a softmax over the kept logits alone).
// fwd: logits (T, E) -> experts (T, k) i32, weights (T, k)
// bwd: dweights (T, k) -> dlogits (T, E) overwritten (the selection is piecewise constant)
#pragma once

#include "core/tensor.h"

namespace tune {

void moe_route_fwd(const TensorView& logits, bool renormalize, const TensorView& experts, const TensorView& weights);
void moe_route_bwd(const TensorView& logits, bool renormalize, const TensorView& experts, const TensorView& dweights,
                   const TensorView& dlogits);

namespace cpu {
template <class R>
void moe_route_fwd(const R* logits, bool renormalize, int32_t* experts, R* weights, int64_t T, int64_t E, int64_t k);
template <class R>
void moe_route_bwd(const R* logits, bool renormalize, const int32_t* experts, const R* dweights, R* dlogits, int64_t T,
                   int64_t E, int64_t k);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA): device pointers; logits, weights and their gradients of the
// element type `dt` (f32 or bf16), experts i32; k <= kMoeMaxTopK, E <= kMoeMaxExperts.
namespace cuda {
constexpr int64_t kMoeMaxTopK = 32, kMoeMaxExperts = 2048;
void moe_route_fwd(const void* logits, bool renormalize, int32_t* experts, void* weights, int64_t T, int64_t E,
                   int64_t k, DType dt);
void moe_route_bwd(const void* logits, bool renormalize, const int32_t* experts, const void* dweights, void* dlogits,
                   int64_t T, int64_t E, int64_t k, DType dt);
}  // namespace cuda

}  // namespace tune
