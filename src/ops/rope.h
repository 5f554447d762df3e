// Rotary position embedding, NeoX / rotate_half style (as transformers' Qwen models): within the first
// `rotary_dim` dims of each head, dim i pairs with i + rotary_dim/2; the remaining dims pass through (partial RoPE).
// inv_freq[i] = theta^(-2i/rotary_dim), angle = pos * inv_freq[i], both in fp32 as transformers computes them.
// fwd: x (T, heads, d), pos (T) i32 -> x rotated in place
// bwd: dx rotated back in place (the transpose of a rotation is the rotation by -angle)
#pragma once

#include "core/tensor.h"

namespace tune {

void rope_fwd(const TensorView& x, const TensorView& pos, int64_t rotary_dim, double theta);
void rope_bwd(const TensorView& dx, const TensorView& pos, int64_t rotary_dim, double theta);

namespace cpu {
// sign = +1 rotates forward, -1 backward.
template <class R>
void rope(R* x, const int32_t* pos, int64_t T, int64_t heads, int64_t d, int64_t rotary_dim, double theta, int sign);
}

// CUDA kernel (defined when built with TUNE_CUDA): x on the device, f32 or bf16 (`dt`), pos i32 on the device.
namespace cuda {
constexpr int64_t kRopeMaxRotaryDim = 512;
void rope(void* x, const int32_t* pos, int64_t T, int64_t heads, int64_t d, int64_t rotary_dim, double theta, int sign,
          DType dt);
}  // namespace cuda

}  // namespace tune
