// rope on the CPU. The angles are formed in fp32 whatever the element type, to match transformers.
#include <cmath>
#include <vector>

#include "ops/rope.h"

namespace tune::cpu {

template <class R>
void rope(R* x, const int32_t* pos, int64_t T, int64_t heads, int64_t d, int64_t rotary_dim, double theta, int sign) {
  const int64_t half = rotary_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  std::vector<R> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), float(2 * i) / float(rotary_dim));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = float(pos[t]) * inv_freq[size_t(i)];
      cs[size_t(i)] = R(std::cos(a));
      sn[size_t(i)] = R(sign) * R(std::sin(a));
    }
    for (int64_t h = 0; h < heads; ++h) {
      R* v = x + (t * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const R a = v[i], b = v[i + half];
        v[i] = a * cs[size_t(i)] - b * sn[size_t(i)];
        v[i + half] = b * cs[size_t(i)] + a * sn[size_t(i)];
      }
    }
  }
}

template void rope<float>(float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, double, int);
template void rope<double>(double*, const int32_t*, int64_t, int64_t, int64_t, int64_t, double, int);

}  // namespace tune::cpu
