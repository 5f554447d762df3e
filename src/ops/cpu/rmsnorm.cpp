// rmsnorm on the CPU: mean of squares in double, normalize, then scale (the order transformers uses).
#include <cmath>

#include "ops/rmsnorm.h"

namespace tune::cpu {

void rmsnorm_fwd(const float* x, const float* w, float eps, bool zero_centered, float* y, int64_t R, int64_t C) {
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
    const float inv = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * inv) * (zero_centered ? 1.0f + w[c] : w[c]);
  }
}

}  // namespace tune::cpu
