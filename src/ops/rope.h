// Rotary position embedding, NeoX / rotate_half style (as transformers' Qwen models): within the first
// `rotary_dim` dims of each head, dim i pairs with i + rotary_dim/2; the remaining dims pass through (partial RoPE).
// inv_freq[i] = theta^(-2i/rotary_dim), angle = pos * inv_freq[i], both in fp32 as transformers computes them.
// x (T, heads, d), pos (T) i32 -> x rotated in place
#pragma once

#include "core/tensor.h"

namespace tune {

void rope_fwd(const TensorView& x, const TensorView& pos, int64_t rotary_dim, double theta);

namespace cpu {
void rope_fwd(float* x, const int32_t* pos, int64_t T, int64_t heads, int64_t d, int64_t rotary_dim, double theta);
}

}  // namespace tune
