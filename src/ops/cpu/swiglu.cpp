// swiglu on the CPU.
#include <cmath>

#include "ops/swiglu.h"

namespace tune::cpu {

void swiglu_fwd(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace tune::cpu
