// Q8_0: blocks of 32 values as an f16 scale d and 32 int8 levels, x = d·q. d = max|x|/127, q = round(x/d)
// with ties away from zero (roundf). The importance vector does not change Q8_0 (ggml ignores it too).
#include <cmath>

#include "quant/fit.h"
#include "quant/blocks.h"
#include "quant/kernels.h"

namespace tune::quant {

void quantize_q8_0(const float* x, void* out, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax > a ? amax : a;
    }
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 32; ++j) y[b].qs[j] = int8_t(std::round(x[j] * id));
  }
}

void dequantize_q8_0(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(in);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[j] = float(x[b].qs[j]) * d;
  }
}

}  // namespace tune::quant
