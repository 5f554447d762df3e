// MoE routing: p = softmax(logits) in fp32 over all E experts, keep the top k (highest first, ties to the lower
// index), optionally renormalize them to sum to 1.
// logits (T, E) -> experts (T, k) i32, weights (T, k) f32
#pragma once

#include "core/tensor.h"

namespace tune {

void moe_route_fwd(const TensorView& logits, bool renormalize, const TensorView& experts, const TensorView& weights);

namespace cpu {
void moe_route_fwd(const float* logits, bool renormalize, int32_t* experts, float* weights, int64_t T, int64_t E,
                   int64_t k);
}

}  // namespace tune
