// rmsnorm on the CPU: statistics in double, normalize, then scale (the order transformers uses).
#include <cmath>

#include "ops/rmsnorm.h"

namespace tune::cpu {

template <class R>
void rmsnorm_fwd(const R* x, const R* w, R eps, bool zero_centered, R* y, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const R* xr = x + r * C;
    R* yr = y + r * C;
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * xr[c];
    const R inv = R(1.0 / std::sqrt(ss / double(C) + double(eps)));
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * inv) * (zero_centered ? R(1) + w[c] : w[c]);
  }
}

template <class R>
void rmsnorm_bwd(const R* x, const R* w, const R* dy, R eps, bool zero_centered, R* dx, R* dw, int64_t rows,
                 int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const R* xr = x + r * C;
    const R* dyr = dy + r * C;
    R* dxr = dx + r * C;
    double ss = 0, dot = 0;
    for (int64_t c = 0; c < C; ++c) {
      ss += double(xr[c]) * xr[c];
      dot += double(dyr[c]) * (zero_centered ? 1.0 + w[c] : double(w[c])) * xr[c];
    }
    const double inv = 1.0 / std::sqrt(ss / double(C) + double(eps));
    const double k = inv * inv * inv * dot / double(C);
    for (int64_t c = 0; c < C; ++c) {
      if (dw) dw[c] += R(double(dyr[c]) * xr[c] * inv);
      const double s = zero_centered ? 1.0 + w[c] : double(w[c]);
      dxr[c] = R(inv * s * dyr[c] - k * xr[c]);
    }
  }
}

template void rmsnorm_fwd<float>(const float*, const float*, float, bool, float*, int64_t, int64_t);
template void rmsnorm_fwd<double>(const double*, const double*, double, bool, double*, int64_t, int64_t);
template void rmsnorm_bwd<float>(const float*, const float*, const float*, float, bool, float*, float*, int64_t,
                                 int64_t);
template void rmsnorm_bwd<double>(const double*, const double*, const double*, double, bool, double*, double*,
                                  int64_t, int64_t);

}  // namespace tune::cpu
