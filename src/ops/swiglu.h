// SwiGLU gate: h = silu(g) * u, silu(g) = g * sigmoid(g).
// g (T, I), u (T, I) -> h (T, I); h may alias g.
#pragma once

#include "core/tensor.h"

namespace tune {

void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& h);

namespace cpu {
void swiglu_fwd(const float* g, const float* u, float* h, int64_t n);
}

}  // namespace tune
