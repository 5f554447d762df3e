// ggml-faithful activation quantizers and weight-row dot products (see dot.h). Integer products are exact, so
// only the float steps are ordered as ggml's generic C code orders them: per-block float scale products and,
// for the k-quants, eight float lanes (element index mod 8) summed across blocks and added last.
#include "quant/dot.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace tune {

namespace {

using namespace quant;  // block layouts (quant/blocks.h)


enum class Act { Q8_0, Q8_1, Q8K, F16, BF16 };

Act act_of(DType w) {
  switch (w) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q5_0: return Act::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1: return Act::Q8_1;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return Act::Q8K;
    case DType::F16: return Act::F16;
    case DType::BF16: return Act::BF16;
    default: throw UnsupportedError(std::string("vec_dot: no dot product for weights of type ") + dtype_name(w));
  }
}

int64_t block_of(Act a) { return a == Act::Q8K ? kQK : (a == Act::F16 || a == Act::BF16) ? 1 : 32; }

// Round to nearest, ties to even (the default FP environment), as _mm256_round_ps(_MM_ROUND_NEAREST) and
// ggml's nearest_int do.
inline int round_even(float v) { return int(std::nearbyint(v)); }

inline float h2f(uint16_t h) { return f16_to_f32(h); }

// x86 quantize_row_q8_0 / q8_1: d = max|x|/127 stored as f16, levels round(x · 127/max) with ties to even.
template <bool kSum>
void quantize_q8_32(const float* x, void* dst, int64_t n) {
  auto* y8 = static_cast<uint8_t*>(dst);
  const size_t bytes = kSum ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  for (int64_t b = 0; b < n / 32; ++b, x += 32, y8 += bytes) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int8_t q[32];
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      int v = round_even(x[j] * id);
      v = v > 127 ? 127 : v < -128 ? -128 : v;
      q[j] = int8_t(v);
      sum += v;
    }
    if constexpr (kSum) {
      BlockQ8_1 blk;
      blk.d = f32_to_f16(d);
      blk.s = f32_to_f16(d * float(sum));
      std::memcpy(blk.qs, q, 32);
      std::memcpy(y8, &blk, sizeof blk);
    } else {
      BlockQ8_0 blk;
      blk.d = f32_to_f16(d);
      std::memcpy(blk.qs, q, 32);
      std::memcpy(y8, &blk, sizeof blk);
    }
  }
}

// quantize_row_q8_K_ref: scale from the signed value of largest magnitude, iscale = -127/max, levels capped at
// 127, d = 1/iscale in f32, bsums = sums of 16 consecutive levels.
void quantize_q8k(const float* x, BlockQ8K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8K& o = y[b];
    float amax = 0, vmax = 0;
    for (int j = 0; j < kQK; ++j) {
      const float a = std::fabs(x[j]);
      if (a > amax) {
        amax = a;
        vmax = x[j];
      }
    }
    if (amax == 0.0f) {
      o.d = 0;
      std::memset(o.qs, 0, sizeof o.qs);
      std::memset(o.bsums, 0, sizeof o.bsums);  // ggml leaves them unset; all-zero levels sum to 0
      continue;
    }
    const float iscale = -127.f / vmax;
    for (int j = 0; j < kQK; ++j) {
      const int v = round_even(iscale * x[j]);
      o.qs[j] = int8_t(v < 127 ? v : 127);
    }
    for (int g = 0; g < kQK / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += o.qs[g * 16 + j];
      o.bsums[g] = int16_t(s);
    }
    o.d = 1 / iscale;
  }
}

// ---- 32-element block types -------------------------------------------------------------------------------

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += int(w[b].qs[j]) * int(a[b].qs[j]);
    sumf += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
  }
  return sumf;
}

float dot_q4_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) {
      lo += ((w[b].qs[j] & 0x0F) - 8) * a[b].qs[j];
      hi += ((w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
    }
    sumf += float(lo + hi) * h2f(w[b].d) * h2f(a[b].d);
  }
  return sumf;
}

float dot_q4_1(const BlockQ4_1* w, const BlockQ8_1* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) {
      lo += (w[b].qs[j] & 0x0F) * a[b].qs[j];
      hi += (w[b].qs[j] >> 4) * a[b].qs[j + 16];
    }
    sumf += (h2f(w[b].d) * h2f(a[b].d)) * float(lo + hi) + h2f(w[b].m) * h2f(a[b].s);
  }
  return sumf;
}

template <class B>
inline void q5_levels(const B& blk, int j, int* v0, int* v1) {
  uint32_t qh;
  std::memcpy(&qh, blk.qh, 4);
  *v0 = (blk.qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
  *v1 = (blk.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8_0* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) {
      int v0, v1;
      q5_levels(w[b], j, &v0, &v1);
      lo += (v0 - 16) * a[b].qs[j];
      hi += (v1 - 16) * a[b].qs[j + 16];
    }
    sumf += (h2f(w[b].d) * h2f(a[b].d)) * float(lo + hi);
  }
  return sumf;
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8_1* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; ++j) {
      int v0, v1;
      q5_levels(w[b], j, &v0, &v1);
      lo += v0 * a[b].qs[j];
      hi += v1 * a[b].qs[j + 16];
    }
    sumf += (h2f(w[b].d) * h2f(a[b].d)) * float(lo + hi) + h2f(w[b].m) * h2f(a[b].s);
  }
  return sumf;
}

// ---- k-quants ---------------------------------------------------------------------------------------------

// Eight integer lanes (element index mod 8) of Σ scale(sub-block) · level · q8 over one 256-block; `lv` holds
// the 256 signed levels, `scale_of(i)` the integer scale of element i.
template <class F>
inline void lanes(const int8_t* lv, const int8_t* q8, F scale_of, int32_t out[8]) {
  for (int l = 0; l < 8; ++l) out[l] = 0;
  for (int i = 0; i < kQK; ++i) out[i & 7] += scale_of(i) * int32_t(int16_t(q8[i] * lv[i]));
}


float dot_q2_k(const BlockQ2K* w, const BlockQ8K* a, int64_t nb) {
  float sumf = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ2K& x = w[b];
    const BlockQ8K& y = a[b];
    int summs = 0;
    for (int j = 0; j < 16; ++j) summs += y.bsums[j] * (x.scales[j] >> 4);
    const float dall = y.d * h2f(x.d);
    const float dmin = y.d * h2f(x.dmin);
    int isum = 0;
    // Element i: 128-chunk c = i/128, shift 2·((i%128)/32), byte 32c + i%32; scale index i/16.
    for (int i = 0; i < kQK; i += 16) {
      const int c = i / 128, shift = 2 * ((i % 128) / 32);
      int s = 0;
      for (int l = i; l < i + 16; ++l) s += y.qs[l] * ((x.qs[32 * c + l % 32] >> shift) & 3);
      isum += (x.scales[i / 16] & 0x0F) * s;
    }
    sumf += dall * float(isum) - dmin * float(summs);
  }
  return sumf;
}

float dot_q3_k(const BlockQ3K* w, const BlockQ8K* a, int64_t nb) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int8_t lv[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ3K& x = w[b];
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, seg = (i % 128) / 32, l = i % 32;
      const int lo = (x.qs[32 * c + l] >> (2 * seg)) & 3;
      const int hbit = (x.hmask[l] >> (4 * c + seg)) & 1;
      lv[i] = int8_t(lo - (hbit ? 0 : 4));
    }
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      const int low = j < 8 ? (x.scales[j] & 0x0F) : (x.scales[j - 8] >> 4);
      const int high = (x.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      sc[j] = (low | (high << 4)) - 32;
    }
    int32_t aux[8];
    lanes(lv, a[b].qs, [&](int i) { return sc[i / 16]; }, aux);
    const float d = h2f(x.d) * a[b].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * float(aux[l]);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

template <bool kHigh, class B>
float dot_q45_k(const B* w, const BlockQ8K* a, int64_t nb) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float sumf = 0;
  int8_t lv[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    const B& x = w[b];
    const BlockQ8K& y = a[b];
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 64, half = (i % 64) / 32, l = i % 32;
      int v = half ? (x.qs[32 * c + l] >> 4) : (x.qs[32 * c + l] & 0x0F);
      if constexpr (kHigh) v += ((x.qh[l] >> (2 * c + half)) & 1) ? 16 : 0;
      lv[i] = int8_t(v);
    }
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) get_scale_min(x.scales, j, &sc[j], &mn[j]);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) sumi += y.bsums[j] * mn[j / 2];
    int32_t aux[8];
    lanes(lv, y.qs, [&](int i) { return sc[i / 32]; }, aux);
    const float d = h2f(x.d) * y.d;
    for (int l = 0; l < 8; ++l) sums[l] += d * float(aux[l]);
    const float dmin = h2f(x.dmin) * y.d;
    sumf -= dmin * float(sumi);
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

float dot_q6_k(const BlockQ6K* w, const BlockQ8K* a, int64_t nb) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int8_t lv[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6K& x = w[b];
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, seg = (i % 128) / 32, l = i % 32;
      const uint8_t* ql = x.ql + 64 * c;
      const uint8_t* qh = x.qh + 32 * c;
      const int low = seg < 2 ? (ql[l + 32 * seg] & 0x0F) : (ql[l + 32 * (seg - 2)] >> 4);
      const int high = (qh[l] >> (2 * seg)) & 3;
      lv[i] = int8_t((low | (high << 4)) - 32);
    }
    int32_t aux[8];
    lanes(lv, a[b].qs, [&](int i) { return int(x.scales[i / 16]); }, aux);
    const float d = h2f(x.d) * a[b].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * float(aux[l]);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

}  // namespace

bool vec_dot_supported(DType wtype) {
  switch (wtype) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::F16:
    case DType::BF16: return true;
    default: return false;
  }
}

size_t vec_dot_act_row_bytes(DType wtype, int64_t cols) {
  const Act a = act_of(wtype);
  if (cols % block_of(a) != 0)
    throw UnsupportedError("vec_dot: row of " + std::to_string(cols) + " values is not a whole number of " +
                           dtype_name(wtype) + " blocks");
  switch (a) {
    case Act::Q8_0: return size_t(cols / 32) * sizeof(BlockQ8_0);
    case Act::Q8_1: return size_t(cols / 32) * sizeof(BlockQ8_1);
    case Act::Q8K: return size_t(cols / kQK) * sizeof(BlockQ8K);
    case Act::F16:
    case Act::BF16: return size_t(cols) * 2;
  }
  return 0;
}

void vec_dot_quantize_act(DType wtype, const float* x, void* dst, int64_t cols) {
  (void)vec_dot_act_row_bytes(wtype, cols);
  switch (act_of(wtype)) {
    case Act::Q8_0: quantize_q8_32<false>(x, dst, cols); return;
    case Act::Q8_1: quantize_q8_32<true>(x, dst, cols); return;
    case Act::Q8K: quantize_q8k(x, static_cast<BlockQ8K*>(dst), cols); return;
    case Act::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_f16(x[i]);
      return;
    }
    case Act::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_bf16(x[i]);
      return;
    }
  }
}

void vec_dot_dequantize_act(DType wtype, const void* src, float* y, int64_t cols) {
  switch (act_of(wtype)) {
    case Act::Q8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < cols; ++i) y[i] = float(b[i / 32].qs[i % 32]) * h2f(b[i / 32].d);
      return;
    }
    case Act::Q8_1: {
      const auto* b = static_cast<const BlockQ8_1*>(src);
      for (int64_t i = 0; i < cols; ++i) y[i] = float(b[i / 32].qs[i % 32]) * h2f(b[i / 32].d);
      return;
    }
    case Act::Q8K: {
      const auto* b = static_cast<const BlockQ8K*>(src);
      for (int64_t i = 0; i < cols; ++i) y[i] = float(b[i / kQK].qs[i % kQK]) * b[i / kQK].d;
      return;
    }
    case Act::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < cols; ++i) y[i] = f16_to_f32(h[i]);
      return;
    }
    case Act::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < cols; ++i) y[i] = bf16_to_f32(h[i]);
      return;
    }
  }
}

float vec_dot(DType wtype, const void* w, const void* a, int64_t cols) {
  const int64_t nb32 = cols / 32, nbk = cols / kQK;
  switch (wtype) {
    case DType::Q8_0: return dot_q8_0(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a), nb32);
    case DType::Q4_0: return dot_q4_0(static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(a), nb32);
    case DType::Q4_1: return dot_q4_1(static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(a), nb32);
    case DType::Q5_0: return dot_q5_0(static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(a), nb32);
    case DType::Q5_1: return dot_q5_1(static_cast<const BlockQ5_1*>(w), static_cast<const BlockQ8_1*>(a), nb32);
    case DType::Q2_K: return dot_q2_k(static_cast<const BlockQ2K*>(w), static_cast<const BlockQ8K*>(a), nbk);
    case DType::Q3_K: return dot_q3_k(static_cast<const BlockQ3K*>(w), static_cast<const BlockQ8K*>(a), nbk);
    case DType::Q4_K:
      return dot_q45_k<false>(static_cast<const BlockQ4K*>(w), static_cast<const BlockQ8K*>(a), nbk);
    case DType::Q5_K:
      return dot_q45_k<true>(static_cast<const BlockQ5K*>(w), static_cast<const BlockQ8K*>(a), nbk);
    case DType::Q6_K: return dot_q6_k(static_cast<const BlockQ6K*>(w), static_cast<const BlockQ8K*>(a), nbk);
    case DType::F16: {
      const auto* x = static_cast<const uint16_t*>(w);
      const auto* y = static_cast<const uint16_t*>(a);
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) s += double(f16_to_f32(x[i]) * f16_to_f32(y[i]));
      return float(s);
    }
    case DType::BF16: {
      const auto* x = static_cast<const uint16_t*>(w);
      const auto* y = static_cast<const uint16_t*>(a);
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) s += double(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
      return float(s);
    }
    default: throw UnsupportedError(std::string("vec_dot: no dot product for weights of type ") + dtype_name(wtype));
  }
}

}  // namespace tune
