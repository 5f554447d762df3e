// Linear layer y = x W^T (+ b), PyTorch's nn.Linear.
// x (T, K), w (N, K), b (N) or null -> y (T, N)
#pragma once

#include "core/tensor.h"

namespace tune {

void linear_fwd(const TensorView& x, const TensorView& w, const TensorView* b, const TensorView& y);

namespace cpu {
void linear_fwd(const float* x, const float* w, const float* b, float* y, int64_t T, int64_t K, int64_t N);
}

}  // namespace tune
