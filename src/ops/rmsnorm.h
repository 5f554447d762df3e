// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * s, with s = w (Qwen2/Qwen3) or s = 1 + w
// (zero-centred, Qwen3.5). Also used per head for QK-norm by viewing (T, heads, d) as (T*heads, d).
// x (R, C), w (C) -> y (R, C); y may alias x.
#pragma once

#include "core/tensor.h"

namespace tune {

void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, bool zero_centered, const TensorView& y);

namespace cpu {
void rmsnorm_fwd(const float* x, const float* w, float eps, bool zero_centered, float* y, int64_t R, int64_t C);
}

}  // namespace tune
