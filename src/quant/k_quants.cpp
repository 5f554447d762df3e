// The k-quants: super-blocks of 256 elements split into sub-blocks (16 of 16 for Q2_K/Q3_K/Q6_K, 8 of 32 for
// Q4_K/Q5_K) whose scales (and mins) are themselves quantized against one or two f16 super-scales.
//   Q2_K  x = d·sc·q − dmin·m    q ∈ 0..3,  4-bit sc and m
//   Q3_K  x = d·(sc − 32)·(q − 4) q ∈ 0..7,  6-bit sc; 2 low bits in qs, the third in hmask
//   Q4_K  x = d·sc·q − dmin·m    q ∈ 0..15, 6-bit sc and m packed in 12 bytes
//   Q5_K  as Q4_K, q ∈ 0..31, the fifth bit in qh
//   Q6_K  x = d·sc·(q − 32)      q ∈ 0..63, int8 sc; 4 low bits in ql, 2 high bits in qh
// Without importance weights each sub-block is fitted alone and the super-scale is max/levels (ggml's
// quantize_row_*_ref); with them the sub-block fits are weighted by imp·sqrt(σ² + x²) and the sub-scales are
// fitted jointly (fit_positive / fit_symmetric). Either way the elements are finally re-rounded against the
// scales as a reader will see them (f16 super-scale times the stored sub-scale).
#include <cmath>
#include <cstring>

#include "quant/fit.h"
#include "quant/blocks.h"
#include "quant/kernels.h"

namespace tune::quant {

namespace {


inline int clamp_int(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// 2-bit levels: bits 2s..2s+1 of qs[32c + l] hold element 128c + 32s + l.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int c = 0; c < 2; ++c) {
    const uint8_t* l4 = L + 128 * c;
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = uint8_t(l4[l] | (l4[l + 32] << 2) | (l4[l + 64] << 4) | (l4[l + 96] << 6));
  }
}
inline int unpack_2bit(const uint8_t* qs, int e) {
  const int c = e / 128, s = (e % 128) / 32, l = e % 32;
  return (qs[32 * c + l] >> (2 * s)) & 3;
}

// Q4_K/Q5_K: 8 six-bit scales and mins in 12 bytes. Sub-blocks 0..3 use the low 6 bits of bytes j (scale) and
// j+4 (min); sub-blocks 4..7 keep their low 4 bits in byte j+4 and their top 2 bits in bits 6..7 of bytes j−4
// and j. `scales` must start zeroed and be filled in order j = 0..7.
void put_scale_min(uint8_t* scales, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] = uint8_t(scales[j - 4] | ((ls >> 4) << 6));
    scales[j] = uint8_t(scales[j] | ((lm >> 4) << 6));
  }
}

// Q3_K: 16 six-bit scales (stored +32) in 12 bytes: low 4 bits in the low nibble of byte j (j < 8) or the
// high nibble of byte j−8, top 2 bits at bit 2·(j/4) of byte 8 + j%4. `scales` must start zeroed.
void put_q3_scale(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = uint8_t(scales[j] | (l & 0xF));
  } else {
    scales[j - 8] = uint8_t(scales[j - 8] | ((l & 0xF) << 4));
  }
  scales[8 + j % 4] = uint8_t(scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
}
inline int get_q3_scale(const uint8_t* scales, int j) {  // signed, −32..31
  const int low = j < 8 ? (scales[j] & 0xF) : (scales[j - 8] >> 4);
  return int8_t(low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// σ² of the k-quant importance weights: twice (Q3_K..Q5_K) or once (Q2_K) the mean of x² over the
// super-block.
float block_sum_x2(const float* x) {
  float s = 0;
  for (int j = 0; j < kQK; ++j) s += x[j] * x[j];
  return s;
}
// w_l = imp_l·sqrt(σ² + x_l²) for one sub-block; returns Σw.
float weighted(const float* x, const float* imp, float sigma2, int n, float* w) {
  float sum = 0;
  for (int l = 0; l < n; ++l) w[l] = imp[l] * std::sqrt(sigma2 + x[l] * x[l]);
  for (int l = 0; l < n; ++l) sum += w[l];
  return sum;
}

// ---------------------------------------------------------------------------------------------------- Q2_K

void q2k_block(const float* x, BlockQ2K* y, const float* imp) {
  uint8_t L[kQK];
  float scales[16], mins[16], w[16];
  if (!imp) {
    float max_scale = 0, max_min = 0;  // scales are positive: the min is subtracted
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) y->scales[j] = uint8_t(round_nearest(iscale * scales[j]));
      y->d = f32_to_f16(max_scale / 15.0f);
    } else {
      std::memset(y->scales, 0, 16);
      y->d = f32_to_f16(0.0f);
    }
    if (max_min > 0) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j)
        y->scales[j] = uint8_t(y->scales[j] | (round_nearest(iscale * mins[j]) << 4));
      y->dmin = f32_to_f16(max_min / 15.0f);
    } else {
      y->dmin = f32_to_f16(0.0f);
    }
  } else {
    const float sigma2 = block_sum_x2(x) / float(kQK);
    float sw[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = weighted(x + 16 * j, imp + 16 * j, sigma2, 16, w);
      scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
    }
    uint8_t ls[16], lm[16];
    const float dm = fit_positive(16, 15, scales, ls, sw);
    const float mm = fit_positive(16, 15, mins, lm, sw);
    y->d = f32_to_f16(dm);
    y->dmin = f32_to_f16(mm);
    for (int j = 0; j < 16; ++j) y->scales[j] = uint8_t(ls[j] | (lm[j] << 4));
  }
  const float d_all = f16_to_f32(y->d), m_all = f16_to_f32(y->dmin);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(y->scales[j] & 0xF);
    if (d == 0) continue;  // keep the fit's levels
    const float m = m_all * float(y->scales[j] >> 4);
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = uint8_t(clamp_int(round_nearest((x[16 * j + l] + m) / d), 0, 3));
  }
  pack_2bit(L, y->qs);
}

// ---------------------------------------------------------------------------------------------------- Q3_K

void q3k_block(const float* x, BlockQ3K* y, const float* imp) {
  int8_t L[kQK];
  float scales[16];
  std::memset(y->scales, 0, 12);
  if (!imp) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_symmetric_refined(16, 4, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_scale != 0) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int8_t l = int8_t(round_nearest(iscale * scales[j]));
        put_q3_scale(y->scales, j, clamp_int(l, -32, 31) + 32);
      }
      y->d = f32_to_f16(1 / iscale);
    } else {
      y->d = f32_to_f16(0.0f);
    }
  } else {
    const float sigma2 = 2 * block_sum_x2(x) / float(kQK);
    float sw[16], w[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = weighted(x + 16 * j, imp + 16 * j, sigma2, 16, w);
      scales[j] = fit_symmetric(16, 4, x + 16 * j, L + 16 * j, w);
    }
    int8_t ls[16];
    const float d_block = fit_symmetric(16, 32, scales, ls, sw);
    for (int j = 0; j < 16; ++j) put_q3_scale(y->scales, j, ls[j]);
    y->d = f32_to_f16(d_block);
  }
  const float d_all = f16_to_f32(y->d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(get_q3_scale(y->scales, j));
    if (d == 0) continue;
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = int8_t(clamp_int(round_nearest(x[16 * j + l] / d), -4, 3) + 4);
  }
  // Third bit of element e → bit e/32 of hmask[e % 32]; the low two bits go to qs.
  std::memset(y->hmask, 0, 32);
  uint8_t low[kQK];
  for (int e = 0; e < kQK; ++e) {
    if (L[e] > 3) y->hmask[e % 32] = uint8_t(y->hmask[e % 32] | (1 << (e / 32)));
    low[e] = uint8_t(L[e] > 3 ? L[e] - 4 : L[e]);
  }
  pack_2bit(low, y->qs);
}

// --------------------------------------------------------------------------------------------- Q4_K and Q5_K

// Fits the 8 sub-blocks of 32 and writes d, dmin and the packed 6-bit scales; returns the levels in L.
// `clamp_joint` caps the jointly fitted levels at 63, as ggml does for Q5_K but not for Q4_K.
template <class Block>
void fit_k4_scales(const float* x, Block* y, const float* imp, int nmax, uint8_t* L, bool clamp_joint) {
  float scales[8], mins[8], w[32];
  std::memset(y->scales, 0, 12);
  if (!imp) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = nmax == 15
                      ? fit_affine(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20, false)
                      : fit_affine(32, 31, x + 32 * j, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
      uint8_t ls = uint8_t(round_nearest(inv_scale * scales[j]));
      uint8_t lm = uint8_t(round_nearest(inv_min * mins[j]));
      put_scale_min(y->scales, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    y->d = f32_to_f16(max_scale / 63.0f);
    y->dmin = f32_to_f16(max_min / 63.0f);
  } else {
    const float sigma2 = 2 * block_sum_x2(x) / float(kQK);
    float sw[8];
    for (int j = 0; j < 8; ++j) {
      sw[j] = weighted(x + 32 * j, imp + 32 * j, sigma2, 32, w);
      scales[j] = fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
    }
    uint8_t ls[8], lm[8];
    const float d_block = fit_positive(8, 63, scales, ls, sw);
    const float m_block = fit_positive(8, 63, mins, lm, sw);
    for (int j = 0; j < 8; ++j) {
      put_scale_min(y->scales, j, clamp_joint && ls[j] > 63 ? 63 : ls[j],
                    clamp_joint && lm[j] > 63 ? 63 : lm[j]);
    }
    y->d = f32_to_f16(d_block);
    y->dmin = f32_to_f16(m_block);
  }
  const float d_all = f16_to_f32(y->d), m_all = f16_to_f32(y->dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min(y->scales, j, &sc, &m);
    const float d = d_all * float(sc);
    if (d == 0) continue;
    const float dm = m_all * float(m);
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] = uint8_t(clamp_int(round_nearest((x[32 * j + l] + dm) / d), 0, nmax));
  }
}

// Nibbles of Q4_K/Q5_K: for each 64-element chunk c, byte 32c + l holds element 64c + l (low) and 64c + 32 +
// l (high).
void pack_k4_nibbles(const uint8_t* L, uint8_t* qs) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = uint8_t((L[64 * c + l] & 0xF) | ((L[64 * c + l + 32] & 0xF) << 4));
}

void q4k_block(const float* x, BlockQ4K* y, const float* imp) {
  uint8_t L[kQK];
  fit_k4_scales(x, y, imp, 15, L, false);
  pack_k4_nibbles(L, y->qs);
}

void q5k_block(const float* x, BlockQ5K* y, const float* imp) {
  uint8_t L[kQK];
  fit_k4_scales(x, y, imp, 31, L, true);
  pack_k4_nibbles(L, y->qs);
  // Fifth bits: bit 2c of qh[l] for element 64c + l, bit 2c + 1 for element 64c + 32 + l.
  std::memset(y->qh, 0, 32);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      if (L[64 * c + l] > 15) y->qh[l] = uint8_t(y->qh[l] | (1 << (2 * c)));
      if (L[64 * c + l + 32] > 15) y->qh[l] = uint8_t(y->qh[l] | (2 << (2 * c)));
    }
  }
}

// ---------------------------------------------------------------------------------------------------- Q6_K

void q6k_block(const float* x, BlockQ6K* y, const float* imp) {
  int8_t L[kQK];
  float scales[16];
  float max_scale = 0, max_abs = 0;
  for (int j = 0; j < 16; ++j) {
    // With importance, the weights are the importance itself (no σ term).
    scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j, imp ? imp + 16 * j : nullptr);
    if (std::fabs(scales[j]) > max_abs) {
      max_abs = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs < kGroupEps) {
    std::memset(y, 0, sizeof(BlockQ6K));
    return;
  }
  const float iscale = -128.0f / max_scale;
  y->d = f32_to_f16(1 / iscale);
  for (int j = 0; j < 16; ++j) {
    const int l = round_nearest(iscale * scales[j]);
    y->scales[j] = int8_t(l < 127 ? l : 127);
  }
  const float d_all = f16_to_f32(y->d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(y->scales[j]);
    if (d == 0) continue;
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = int8_t(clamp_int(round_nearest(x[16 * j + l] / d), -32, 31) + 32);
  }
  // Half h (128 elements): ql[64h + l] = e(l) | e(l+64) << 4, ql[64h + 32 + l] = e(l+32) | e(l+96) << 4, and
  // qh[32h + l] holds the top 2 bits of e(l), e(l+32), e(l+64), e(l+96) at bits 0, 2, 4, 6.
  for (int h = 0; h < 2; ++h) {
    const int8_t* q = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      y->ql[64 * h + l] = uint8_t((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
      y->ql[64 * h + l + 32] = uint8_t((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
      y->qh[32 * h + l] =
          uint8_t((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) | ((q[l + 96] >> 4) << 6));
    }
  }
}

template <class Block, void (*kBlock)(const float*, Block*, const float*)>
void quantize_blocks(const float* x, void* out, int64_t n, const float* imp) {
  auto* y = static_cast<Block*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) kBlock(x + kQK * b, y + b, imp ? imp + kQK * b : nullptr);
}

}  // namespace

void quantize_q2_k(const float* x, void* y, int64_t n, const float* w) {
  quantize_blocks<BlockQ2K, q2k_block>(x, y, n, w);
}
void quantize_q3_k(const float* x, void* y, int64_t n, const float* w) {
  quantize_blocks<BlockQ3K, q3k_block>(x, y, n, w);
}
void quantize_q4_k(const float* x, void* y, int64_t n, const float* w) {
  quantize_blocks<BlockQ4K, q4k_block>(x, y, n, w);
}
void quantize_q5_k(const float* x, void* y, int64_t n, const float* w) {
  quantize_blocks<BlockQ5K, q5k_block>(x, y, n, w);
}
void quantize_q6_k(const float* x, void* y, int64_t n, const float* w) {
  quantize_blocks<BlockQ6K, q6k_block>(x, y, n, w);
}

void dequantize_q2_k(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ2K*>(in);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
    for (int e = 0; e < kQK; ++e) {
      const uint8_t sc = x[b].scales[e / 16];
      const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
      y[e] = dl * float(unpack_2bit(x[b].qs, e)) - ml;
    }
  }
}

void dequantize_q3_k(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ3K*>(in);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f16_to_f32(x[b].d);
    for (int e = 0; e < kQK; ++e) {
      const float dl = d * float(get_q3_scale(x[b].scales, e / 16));
      const int high = (x[b].hmask[e % 32] >> (e / 32)) & 1;
      y[e] = dl * float(unpack_2bit(x[b].qs, e) - (high ? 0 : 4));
    }
  }
}

void dequantize_q4_k(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4K*>(in);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min(x[b].scales, j, &sc, &m);
      const float dl = d * float(sc), ml = dmin * float(m);
      const uint8_t* q = x[b].qs + 32 * (j / 2);
      for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * float(j % 2 ? q[l] >> 4 : q[l] & 0xF) - ml;
    }
  }
}

void dequantize_q5_k(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5K*>(in);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min(x[b].scales, j, &sc, &m);
      const float dl = d * float(sc), ml = dmin * float(m);
      const uint8_t* q = x[b].qs + 32 * (j / 2);
      for (int l = 0; l < 32; ++l) {
        const int low = j % 2 ? q[l] >> 4 : q[l] & 0xF;
        const int high = (x[b].qh[l] >> j) & 1;  // bit j of qh[l]: sub-block j = chunk j/2, half j%2
        y[32 * j + l] = dl * float(low + (high ? 16 : 0)) - ml;
      }
    }
  }
}

void dequantize_q6_k(const void* in, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ6K*>(in);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f16_to_f32(x[b].d);
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
      const uint8_t lowbyte = x[b].ql[64 * h + l + 32 * (quarter & 1)];
      const int low = quarter < 2 ? (lowbyte & 0xF) : (lowbyte >> 4);
      const int high = (x[b].qh[32 * h + l] >> (2 * quarter)) & 3;
      const int q = int8_t((low | (high << 4)) - 32);
      y[e] = d * float(x[b].scales[e / 16]) * float(q);
    }
  }
}

}  // namespace tune::quant
