// The 32-element 4- and 5-bit formats. Byte j of qs holds element j in its low nibble and element j+16 in its
// high nibble; Q5 keeps the fifth bits in qh (bit j = element j, little-endian u32).
//   Q4_0: x = d·(q − 8)    Q4_1: x = d·q + m    Q5_0: x = d·(q − 16)    Q5_1: x = d·q + m
// Reference path: _0 types scale by the signed value of largest magnitude (d = max/−8 or max/−16) and round
// by truncating q + 0.5; _1 types span [min, max]. Importance path: weights w_j = imp_j·sqrt(σ² + x_j²) with
// σ² the mean of x² over the row, then the weighted symmetric (_0) or affine (_1) search of fit.h per block.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "quant/fit.h"
#include "quant/blocks.h"
#include "quant/kernels.h"

namespace tune::quant {

namespace {


// Packs 32 levels (0..15 or 0..31) into the nibbles and, for 5-bit levels, the high-bit word.
template <class L>
void pack_nibbles(const L* levels, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4));
}
template <class L>
void pack_high_bits(const L* levels, uint8_t* qh) {
  uint32_t bits = 0;
  for (int j = 0; j < 16; ++j) {
    bits |= uint32_t((levels[j] & 0x10) >> 4) << j;
    bits |= uint32_t((levels[j + 16] & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(qh, &bits, 4);
}
// Level of element j (0..31) of a block: nibble plus the high bit when `qh` is given.
inline int level_at(const uint8_t* qs, const uint8_t* qh, int j) {
  const int nibble = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  if (!qh) return nibble;
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return nibble | int(((bits >> j) & 1u) << 4);
}

// σ² of the importance weights: the mean of x² over the whole row.
float row_sigma2(const float* x, int64_t n) {
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += x[j] * x[j];
  return sum / float(n);
}
void importance_weights(const float* x, const float* imp, float sigma2, float* w) {
  for (int j = 0; j < 32; ++j) w[j] = imp[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// Reference path of the symmetric formats: d = max/−half, q = min(2·half − 1, trunc(x/d + half + 0.5)).
template <class Block>
void quantize_symmetric_ref(const float* x, Block* y, int64_t n, int half) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / float(-half);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    uint8_t levels[32];
    for (int j = 0; j < 32; ++j) {
      const int q = int8_t(x[j] * id + (float(half) + 0.5f));  // truncation, as ggml's (int8_t) cast
      levels[j] = uint8_t(q < 2 * half - 1 ? q : 2 * half - 1);
    }
    pack_nibbles(levels, y[b].qs);
    if constexpr (std::is_same_v<Block, BlockQ5_0>) pack_high_bits(levels, y[b].qh);
  }
}

// Reference path of the affine formats: d = (max − min)/nmax, m = min, q = trunc((x − min)/d + 0.5).
template <class Block>
void quantize_affine_ref(const float* x, Block* y, int64_t n, int nmax) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / float(nmax);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    y[b].m = f32_to_f16(min);
    uint8_t levels[32];
    for (int j = 0; j < 32; ++j) {
      const float v = (x[j] - min) * id + 0.5f;
      if (nmax == 15) {
        const int q = int8_t(v);  // Q4_1 clamps to 15
        levels[j] = uint8_t(q < 15 ? q : 15);
      } else {
        levels[j] = uint8_t(v);  // Q5_1 does not clamp (v ≤ 31.5 by construction)
      }
    }
    pack_nibbles(levels, y[b].qs);
    if constexpr (std::is_same_v<Block, BlockQ5_1>) pack_high_bits(levels, y[b].qh);
  }
}

template <class Block>
void quantize_symmetric_weighted(const float* x, Block* y, int64_t n, const float* imp, int half) {
  const float sigma2 = row_sigma2(x, n);
  float w[32];
  int8_t levels[32];
  for (int64_t b = 0; b < n / 32; ++b) {
    importance_weights(x + 32 * b, imp + 32 * b, sigma2, w);
    y[b].d = f32_to_f16(fit_symmetric(32, half, x + 32 * b, levels, w));
    pack_nibbles(levels, y[b].qs);
    if constexpr (std::is_same_v<Block, BlockQ5_0>) pack_high_bits(levels, y[b].qh);
  }
}

template <class Block>
void quantize_affine_weighted(const float* x, Block* y, int64_t n, const float* imp, int nmax) {
  const float sigma2 = row_sigma2(x, n);
  float w[32];
  uint8_t levels[32];
  for (int64_t b = 0; b < n / 32; ++b) {
    importance_weights(x + 32 * b, imp + 32 * b, sigma2, w);
    float min;
    const float d = fit_affine(32, nmax, x + 32 * b, w, levels, &min, -0.9f, 0.05f, 36, false);
    y[b].d = f32_to_f16(d);
    y[b].m = f32_to_f16(-min);
    pack_nibbles(levels, y[b].qs);
    if constexpr (std::is_same_v<Block, BlockQ5_1>) pack_high_bits(levels, y[b].qh);
  }
}

}  // namespace

void quantize_q4_0(const float* x, void* y, int64_t n, const float* weights) {
  if (weights) {
    quantize_symmetric_weighted(x, static_cast<BlockQ4_0*>(y), n, weights, 8);
  } else {
    quantize_symmetric_ref(x, static_cast<BlockQ4_0*>(y), n, 8);
  }
}
void quantize_q5_0(const float* x, void* y, int64_t n, const float* weights) {
  if (weights) {
    quantize_symmetric_weighted(x, static_cast<BlockQ5_0*>(y), n, weights, 16);
  } else {
    quantize_symmetric_ref(x, static_cast<BlockQ5_0*>(y), n, 16);
  }
}
void quantize_q4_1(const float* x, void* y, int64_t n, const float* weights) {
  if (weights) {
    quantize_affine_weighted(x, static_cast<BlockQ4_1*>(y), n, weights, 15);
  } else {
    quantize_affine_ref(x, static_cast<BlockQ4_1*>(y), n, 15);
  }
}
void quantize_q5_1(const float* x, void* y, int64_t n, const float* weights) {
  if (weights) {
    quantize_affine_weighted(x, static_cast<BlockQ5_1*>(y), n, weights, 31);
  } else {
    quantize_affine_ref(x, static_cast<BlockQ5_1*>(y), n, 31);
  }
}

void dequantize_q4_0(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(in);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[j] = float(level_at(x[b].qs, nullptr, j) - 8) * d;
  }
}
void dequantize_q4_1(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(in);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d), m = f16_to_f32(x[b].m);
    for (int j = 0; j < 32; ++j) y[j] = float(level_at(x[b].qs, nullptr, j)) * d + m;
  }
}
void dequantize_q5_0(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(in);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[j] = float(level_at(x[b].qs, x[b].qh, j) - 16) * d;
  }
}
void dequantize_q5_1(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(in);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = f16_to_f32(x[b].d), m = f16_to_f32(x[b].m);
    for (int j = 0; j < 32; ++j) y[j] = float(level_at(x[b].qs, x[b].qh, j)) * d + m;
  }
}

}  // namespace tune::quant
