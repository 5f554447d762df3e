// vec_dot_fast: per weight type, the exact integer sums of each block (scalar, AVX2 or AVX-512 code) and the
// float steps of dot_fast.h in one shared form, so that every SIMD level gives the same bits. Loops run over
// blocks of 16 weight rows and, inside, over every activation row, so a prompt's rows reuse the weights from
// cache. This file is compiled without floating-point contraction; the fused steps are explicit std::fma.
#include "quant/dot_fast.h"

// GCC 12 reports the undefined pass-through operand inside several AVX-512 intrinsics (insert, extract,
// broadcast) as possibly uninitialized; the warning is about the header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "quant/blocks.h"
#include "quant/cpu_features.h"
#include "quant/dot.h"
#include "quant/dot_packed.h"
#include "quant/quant.h"

namespace tune {

namespace {

using namespace quant;  // block layouts (quant/blocks.h)

#define TUNE_INLINE inline __attribute__((always_inline))
#define TUNE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TUNE_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

constexpr int64_t kRowBlock = 16;  // weight rows kept in cache while every activation row passes
static_assert(kRowBlock == PackedWeights::kRows, "matmul work units are whole packed groups");

struct Job {
  const uint8_t* w;
  size_t wb;  // bytes per weight row
  int64_t rows;
  const uint8_t* a;
  size_t ab;  // bytes per activation row
  int64_t nact;
  int64_t cols;
  float* y;
  int64_t ys;
  DotOrder order;
};

// ---- float steps shared by every level ------------------------------------------------------------------
// Inlined, so std::fma is one instruction in the SIMD functions.

// One 32-block of Q8_0 / Q4_0: c = fma(float(isum), d_w·d_a, c).
TUNE_INLINE float step32(float c, int32_t isum, float dw, float da) {
  return std::fma(float(isum), dw * da, c);
}

// One 256-block of Q4_K / Q5_K: the scale term, then the min term (into `c`, or into `cm` for split mins).
TUNE_INLINE void step_k(float& c, float& cm, int32_t isum, int32_t msum, float dw, float dmin, float da,
                        bool split) {
  c = std::fma(float(isum), dw * da, c);
  if (split) {
    cm = std::fma(float(msum), dmin * da, cm);
  } else {
    c = std::fma(float(msum), -(dmin * da), c);
  }
}

// The 16-lane reduction GCC emits for _mm512_reduce_add_ps.
TUNE_INLINE float reduce16(const float* c) {
  float t3[8], t6[4];
  for (int i = 0; i < 8; ++i) t3[i] = c[i + 8] + c[i];
  for (int i = 0; i < 4; ++i) t6[i] = t3[i + 4] + t3[i];
  return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

// The 6-bit scales and mins of the 8 sub-blocks of a Q4_K / Q5_K block, from its 12 packed bytes: bytes 0-3
// hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7, bytes 4-7 the same for the mins, bytes 8-11
// the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high nibble).
TUNE_INLINE void scales_mins(const uint8_t* s12, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t a, b, c;
  std::memcpy(&a, s12, 4);
  std::memcpy(&b, s12 + 4, 4);
  std::memcpy(&c, s12 + 8, 4);
  const uint32_t sc0 = a & 0x3f3f3f3fu, mn0 = b & 0x3f3f3f3fu;
  const uint32_t sc1 = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
  const uint32_t mn1 = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
  std::memcpy(sc, &sc0, 4);
  std::memcpy(sc + 4, &sc1, 4);
  std::memcpy(mn, &mn0, 4);
  std::memcpy(mn + 4, &mn1, 4);
}

TUNE_INLINE int32_t min_sum(const uint8_t mn[8], const int16_t* bsums) {
  int32_t m = 0;
  for (int j = 0; j < 8; ++j) m += int32_t(mn[j]) * (int32_t(bsums[2 * j]) + int32_t(bsums[2 * j + 1]));
  return m;
}

// y = row(j, ctx, r, t) over the job's rows in blocks of kRowBlock weight rows x every activation row. `row`
// is a plain function (lambdas would not inherit the caller's target attribute).
template <class F>
TUNE_INLINE void for_rows(const Job& j, F row, const void* ctx = nullptr) {
  for (int64_t r0 = 0; r0 < j.rows; r0 += kRowBlock) {
    const int64_t r1 = std::min(j.rows, r0 + kRowBlock);
    for (int64_t t = 0; t < j.nact; ++t)
      for (int64_t r = r0; r < r1; ++r) j.y[t * j.ys + r] = row(j, ctx, r, t);
  }
}

std::vector<uint8_t>& scratch() {
  thread_local std::vector<uint8_t> s;
  return s;
}

// ---- scalar ---------------------------------------------------------------------------------------------

TUNE_INLINE float q8_0_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ8_0*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) s += int32_t(w[b].qs[i]) * a[b].qs[i];
    c = step32(c, s, f16_to_f32(w[b].d), f16_to_f32(a[b].d));
  }
  return c;
}

void q8_0_scalar(const Job& j) {
  for_rows(j, q8_0_scalar_row);
}

TUNE_INLINE float q4_0_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ4_0*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s = 0;
    for (int i = 0; i < 16; ++i)
      s += ((w[b].qs[i] & 15) - 8) * a[b].qs[i] + ((w[b].qs[i] >> 4) - 8) * a[b].qs[i + 16];
    c = step32(c, s, f16_to_f32(w[b].d), f16_to_f32(a[b].d));
  }
  return c;
}

void q4_0_scalar(const Job& j) {
  for_rows(j, q4_0_scalar_row);
}

TUNE_INLINE float q4_1_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ4_1*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_1*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) s += (w[b].qs[i] & 15) * a[b].qs[i] + (w[b].qs[i] >> 4) * a[b].qs[i + 16];
    c = step32(c, s, f16_to_f32(w[b].d), f16_to_f32(a[b].d));
    c = std::fma(f16_to_f32(w[b].m), f16_to_f32(a[b].s), c);
  }
  return c;
}

void q4_1_scalar(const Job& j) {
  for_rows(j, q4_1_scalar_row);
}

template <bool kQ5, class B>
TUNE_INLINE float q45_k_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const bool split = j.order == DotOrder::SplitMins;
  const auto* w = reinterpret_cast<const B*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float c = 0, cm = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t sc[8], mn[8];
    scales_mins(w[b].scales, sc, mn);
    int32_t s = 0;
    for (int k = 0; k < 8; ++k) {
      const uint8_t* q = w[b].qs + 32 * (k / 2);
      const int shift = 4 * (k & 1);
      int32_t sub = 0;
      for (int i = 0; i < 32; ++i) {
        int v = (q[i] >> shift) & 15;
        if constexpr (kQ5) v |= ((w[b].qh[i] >> k) & 1) << 4;
        sub += v * a[b].qs[32 * k + i];
      }
      s += int32_t(sc[k]) * sub;
    }
    step_k(c, cm, s, min_sum(mn, a[b].bsums), f16_to_f32(w[b].d), f16_to_f32(w[b].dmin), a[b].d, split);
  }
  return split ? c - cm : c;
}

template <bool kQ5, class B>
void q45_k_scalar(const Job& j) {
  for_rows(j, q45_k_scalar_row<kQ5, B>);
}

TUNE_INLINE float q6_k_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const auto* w = reinterpret_cast<const BlockQ6K*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t sub = 0;
      for (int i = 16 * g; i < 16 * g + 16; ++i) {
        const int ch = i / 128, seg = (i % 128) / 32, l = i % 32;
        const uint8_t* ql = w[b].ql + 64 * ch;
        const int low = seg < 2 ? (ql[l + 32 * seg] & 15) : (ql[l + 32 * (seg - 2)] >> 4);
        const int high = (w[b].qh[32 * ch + l] >> (2 * seg)) & 3;
        sub += ((low | (high << 4)) - 32) * a[b].qs[i];
      }
      s += int32_t(w[b].scales[g]) * sub;
    }
    c = std::fma(float(s), f16_to_f32(w[b].d) * a[b].d, c);
  }
  return c;
}

void q6_k_scalar(const Job& j) {
  for_rows(j, q6_k_scalar_row);
}

// Q3_K's levels (2 low bits, high bit from hmask: level − 4 when the bit is clear) and signed 6-bit scales.
TUNE_INLINE void q3_k_scales(const BlockQ3K& x, int sc[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (x.scales[j] & 0x0F) : (x.scales[j - 8] >> 4);
    const int high = (x.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc[j] = (low | (high << 4)) - 32;
  }
}

// One Q3_K block's 8 f32 lanes: lane l gets the values i with (i mod 32) / 4 == l.
TUNE_INLINE void q3_k_lanes_step(float acc[8], const int32_t lanes[8], float d) {
  for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, float(lanes[l]), acc[l]);
}

// hsum of 8 f32 lanes as ggml's AVX2 code sums them.
TUNE_INLINE float hsum8(const float* a) {
  const float r0 = a[4] + a[0], r1 = a[5] + a[1], r2 = a[6] + a[2], r3 = a[7] + a[3];
  return (r0 + r2) + (r1 + r3);
}

TUNE_INLINE float q3_k_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const auto* w = reinterpret_cast<const BlockQ3K*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float acc[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int sc[16];
    q3_k_scales(w[b], sc);
    int32_t lanes[8] = {};
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, seg = (i % 128) / 32, l = i % 32;
      const int lo = (w[b].qs[32 * c + l] >> (2 * seg)) & 3;
      const int hbit = (w[b].hmask[l] >> (4 * c + seg)) & 1;
      lanes[l / 4] += sc[i / 16] * (lo - (hbit ? 0 : 4)) * a[b].qs[i];
    }
    q3_k_lanes_step(acc, lanes, a[b].d * f16_to_f32(w[b].d));
  }
  return hsum8(acc);
}

void q3_k_scalar(const Job& j) {
  for_rows(j, q3_k_scalar_row);
}

TUNE_INLINE float f16_scalar_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const auto* w = reinterpret_cast<const uint16_t*>(j.w + size_t(r) * j.wb);
  const auto* x = reinterpret_cast<const float*>(j.a + size_t(t) * j.ab);
  float c[16] = {};
  for (int64_t k = 0; k < j.cols; k += 16)
    for (int l = 0; l < 16; ++l) c[l] = std::fma(x[k + l], f16_to_f32(w[k + l]), c[l]);
  return reduce16(c);
}

void f16_scalar(const Job& j) {
  for_rows(j, f16_scalar_row);
}

// ---- AVX2 -----------------------------------------------------------------------------------------------

TUNE_AVX2 TUNE_INLINE int32_t hsum8_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

TUNE_AVX2 TUNE_INLINE float h2f_avx2(uint16_t h) {
  return _cvtsh_ss(h);
}

// Σ w·a over 32 signed bytes: |w| times a with w's sign, pairs summed to int16 (|w·a| <= 127·127, pairs fit),
// then to int32.
TUNE_AVX2 TUNE_INLINE __m256i dot32_avx2(__m256i w, __m256i a) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

TUNE_AVX2 TUNE_INLINE float q8_0_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ8_0*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    c = step32(c, hsum8_epi32(dot32_avx2(wv, av)), h2f_avx2(w[b].d), h2f_avx2(a[b].d));
  }
  return c;
}

TUNE_AVX2 void q8_0_avx2(const Job& j) {
  for_rows(j, q8_0_avx2_row);
}

TUNE_AVX2 TUNE_INLINE __m256i q4_0_levels_avx2(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(15);
  const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
  return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

TUNE_AVX2 TUNE_INLINE float q4_0_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ4_0*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    c = step32(c, hsum8_epi32(dot32_avx2(q4_0_levels_avx2(w[b].qs), av)), h2f_avx2(w[b].d), h2f_avx2(a[b].d));
  }
  return c;
}

TUNE_AVX2 void q4_0_avx2(const Job& j) {
  for_rows(j, q4_0_avx2_row);
}

// Σ_k sc_k Σ q·a over the 8 sub-blocks of a Q4_K / Q5_K block (levels 0..31 are unsigned bytes).
template <bool kQ5, class B>
TUNE_AVX2 TUNE_INLINE int32_t q45_k_isum_avx2(const B& w, const BlockQ8K& a, const uint8_t sc[8]) {
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256i acc = _mm256_setzero_si256();
  __m256i qh;
  if constexpr (kQ5) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh));
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs + 32 * c));
    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if constexpr (kQ5) {
      const __m256i one = _mm256_set1_epi8(1);
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
    }
    const __m256i alo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * c));
    const __m256i ahi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 64 * c + 32));
    acc =
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_set1_epi16(sc[2 * c])));
    acc = _mm256_add_epi32(
        acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ahi), _mm256_set1_epi16(sc[2 * c + 1])));
  }
  return hsum8_epi32(acc);
}

template <bool kQ5, class B>
TUNE_AVX2 TUNE_INLINE float q45_k_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const bool split = j.order == DotOrder::SplitMins;
  const auto* w = reinterpret_cast<const B*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float c = 0, cm = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t sc[8], mn[8];
    scales_mins(w[b].scales, sc, mn);
    const int32_t s = q45_k_isum_avx2<kQ5>(w[b], a[b], sc);
    step_k(c, cm, s, min_sum(mn, a[b].bsums), h2f_avx2(w[b].d), h2f_avx2(w[b].dmin), a[b].d, split);
  }
  return split ? c - cm : c;
}

template <bool kQ5, class B>
TUNE_AVX2 void q45_k_avx2(const Job& j) {
  for_rows(j, q45_k_avx2_row<kQ5, B>);
}

TUNE_AVX2 TUNE_INLINE int32_t q6_k_isum_avx2(const BlockQ6K& w, const BlockQ8K& a) {
  const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < 2; ++c) {
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.ql + 64 * c));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.ql + 64 * c + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh + 32 * c));
    const __m256i low[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
    for (int s = 0; s < 4; ++s) {  // 32 values 128c + 32s .. : groups 8c + 2s and 8c + 2s + 1
      const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * s), m2), 4);
      const __m256i q = _mm256_or_si256(low[s], high);
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 128 * c + 32 * s));
      const int g = 8 * c + 2 * s;
      const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(w.scales[g + 1]), _mm_set1_epi16(w.scales[g]));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), sc));
    }
  }
  // The levels are q - 32: subtract 32 Σ_g scale_g · bsum_g.
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
  return hsum8_epi32(acc) - 32 * hsum8_epi32(_mm256_madd_epi16(sc16, bs));
}

TUNE_AVX2 TUNE_INLINE float q6_k_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const auto* w = reinterpret_cast<const BlockQ6K*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b)
    c = std::fma(float(q6_k_isum_avx2(w[b], a[b])), h2f_avx2(w[b].d) * a[b].d, c);
  return c;
}

TUNE_AVX2 void q6_k_avx2(const Job& j) {
  for_rows(j, q6_k_avx2_row);
}

TUNE_AVX2 TUNE_INLINE float q3_k_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const auto* w = reinterpret_cast<const BlockQ3K*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4), one = _mm256_set1_epi8(1);
  float acc[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int sc[16];
    q3_k_scales(w[b], sc);
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].hmask));
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      for (int seg = 0; seg < 4; ++seg) {  // 32 values 128c + 32seg ..: groups of 16 with scales g, g + 1
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * seg), m3);
        // 4 where the high bit is clear: (lo − 4·(1 − hbit))·a = lo·a − hsub·a
        const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * c + seg), one);
        const __m256i hsub = _mm256_andnot_si256(_mm256_slli_epi16(hbit, 2), m4);
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * c + 32 * seg));
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(lo, av), _mm256_maddubs_epi16(hsub, av));
        const int g = 8 * c + 2 * seg;
        const __m256i s =
            _mm256_set_m128i(_mm_set1_epi16(int16_t(sc[g + 1])), _mm_set1_epi16(int16_t(sc[g])));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, s));
      }
    }
    int32_t lanes[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), sum);
    q3_k_lanes_step(acc, lanes, a[b].d * h2f_avx2(w[b].d));
  }
  return hsum8(acc);
}

TUNE_AVX2 void q3_k_avx2(const Job& j) {
  for_rows(j, q3_k_avx2_row);
}

TUNE_AVX2 TUNE_INLINE float f16_avx2_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const auto* w = reinterpret_cast<const uint16_t*>(j.w + size_t(r) * j.wb);
  const auto* x = reinterpret_cast<const float*>(j.a + size_t(t) * j.ab);
  __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
  for (int64_t k = 0; k < j.cols; k += 16) {
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k + 8)));
    c0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), w0, c0);
    c1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), w1, c1);
  }
  float c[16];
  _mm256_storeu_ps(c, c0);
  _mm256_storeu_ps(c + 8, c1);
  return reduce16(c);
}

TUNE_AVX2 void f16_avx2(const Job& j) {
  for_rows(j, f16_avx2_row);
}

// ---- AVX-512 (BW, VL, VNNI) -----------------------------------------------------------------------------
// Four weight rows at a time: their integer sums are reduced together into one 4-lane vector (lane = row) and
// the float steps run on it, so the four rows' fma chains advance side by side (each lane is the same IEEE
// operation sequence as the scalar code's).

// y[...] for rows r..r+3 (row4) or one row (row1), over blocks of kRowBlock rows x every activation row.
template <class F4, class F1>
TUNE_INLINE void for_rows4(const Job& j, F4 row4, F1 row1, const void* ctx = nullptr) {
  for (int64_t r0 = 0; r0 < j.rows; r0 += kRowBlock) {
    const int64_t r1 = std::min(j.rows, r0 + kRowBlock);
    for (int64_t t = 0; t < j.nact; ++t) {
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) row4(j, ctx, r, t, j.y + t * j.ys + r);
      for (; r < r1; ++r) j.y[t * j.ys + r] = row1(j, ctx, r, t);
    }
  }
}

TUNE_AVX512 TUNE_INLINE int32_t hsum16_epi32(__m512i v) {
  const __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  return hsum8_epi32(s);
}

TUNE_AVX512 TUNE_INLINE __m128i fold8_epi32(__m256i v) {
  return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

TUNE_AVX512 TUNE_INLINE __m128i fold16_epi32(__m512i v) {
  return fold8_epi32(_mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)));
}

// The sums of four 16-lane (8-lane) integer vectors, as lanes 0..3 (integer sums: any order is exact).
TUNE_AVX512 TUNE_INLINE __m128i hsum4x16_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
  return _mm_hadd_epi32(_mm_hadd_epi32(fold16_epi32(a), fold16_epi32(b)),
                        _mm_hadd_epi32(fold16_epi32(c), fold16_epi32(d)));
}

TUNE_AVX512 TUNE_INLINE __m128i hsum4x8_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
  return _mm_hadd_epi32(_mm_hadd_epi32(fold8_epi32(a), fold8_epi32(b)),
                        _mm_hadd_epi32(fold8_epi32(c), fold8_epi32(d)));
}

// The f16 values at p0..p3 as 4 floats.
TUNE_AVX512 TUNE_INLINE __m128 h2f4(uint16_t p0, uint16_t p1, uint16_t p2, uint16_t p3) {
  return _mm_cvtph_ps(_mm_setr_epi16(short(p0), short(p1), short(p2), short(p3), 0, 0, 0, 0));
}

// Σ w·a over 32 signed bytes into 8 int32 lanes: |w| times a with w's sign.
TUNE_AVX512 TUNE_INLINE __m256i dot32_vnni(__m256i w, __m256i a) {
  const __mmask32 neg = _mm256_movepi8_mask(w);
  const __m256i as = _mm256_mask_sub_epi8(a, neg, _mm256_setzero_si256(), a);
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), as);
}

TUNE_AVX512 TUNE_INLINE float q8_0_avx512_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / 32;
  const auto* w = reinterpret_cast<const BlockQ8_0*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    c = step32(c, hsum8_epi32(dot32_vnni(wv, av)), h2f_avx2(w[b].d), h2f_avx2(a[b].d));
  }
  return c;
}

TUNE_AVX512 TUNE_INLINE void q8_0_avx512_row4(const Job& j, const void* ctx, int64_t r, int64_t t, float* y) {
  const int64_t nb = j.cols / 32;
  const BlockQ8_0* w[4];
  for (int i = 0; i < 4; ++i) w[i] = reinterpret_cast<const BlockQ8_0*>(j.w + size_t(r + i) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(j.a + size_t(t) * j.ab);
  __m128 c = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    __m256i p[4];
    for (int i = 0; i < 4; ++i)
      p[i] = dot32_vnni(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i][b].qs)), av);
    const __m128 s = _mm_cvtepi32_ps(hsum4x8_epi32(p[0], p[1], p[2], p[3]));
    const __m128 dw = h2f4(w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d);
    c = _mm_fmadd_ps(s, _mm_mul_ps(dw, _mm_set1_ps(h2f_avx2(a[b].d))), c);
  }
  _mm_storeu_ps(y, c);
}

TUNE_AVX512 void q8_0_avx512(const Job& j) {
  for_rows4(j, q8_0_avx512_row4, q8_0_avx512_row);
}

// Q4_K / Q5_K with 512-bit registers: 64 weight bytes hold sub-blocks (4h, 4h+2) in their low nibbles and
// (4h+1, 4h+3) in their high nibbles, so the activation block is first laid out to match: per half h, the
// values of sub-blocks [4h | 4h+2] then [4h+1 | 4h+3] (256 bytes per block), followed by the 8 pair sums of
// its bsums (the min term's weights); prepared once per activation row.
constexpr int64_t kQ4kLayout = kQK + 16;

TUNE_AVX512 void q4k_layout_avx512(const BlockQ8K* a, int64_t nb, int8_t* out) {
  for (int64_t b = 0; b < nb; ++b) {
    int8_t* d = out + kQ4kLayout * b;
    for (int h = 0; h < 2; ++h) {
      const int8_t* s = a[b].qs + 128 * h;
      std::memcpy(d + 128 * h, s, 32);
      std::memcpy(d + 128 * h + 32, s + 64, 32);
      std::memcpy(d + 128 * h + 64, s + 32, 32);
      std::memcpy(d + 128 * h + 96, s + 96, 32);
    }
    int16_t pairs[8];
    for (int k = 0; k < 8; ++k) pairs[k] = int16_t(a[b].bsums[2 * k] + a[b].bsums[2 * k + 1]);
    std::memcpy(d + kQK, pairs, 16);
  }
}

// The integer vector of Σ_k sc_k Σ q·a (16 lanes) and of the min sum (4 lanes) of one Q4_K / Q5_K block.
template <bool kQ5, class B>
TUNE_AVX512 TUNE_INLINE void q45_k_ints_avx512(const B& w, const int8_t* al, __m512i* isum, __m128i* msum) {
  uint8_t sc[8], mn[8];
  scales_mins(w.scales, sc, mn);
  uint64_t sc64, mn64;
  std::memcpy(&sc64, sc, 8);
  std::memcpy(&mn64, mn, 8);
  // int16 lane i of a scale vector: sub-block (lane < 16 ? k0 : k1) for the pairs (k0, k1) = (4h, 4h+2) and
  // (4h+1, 4h+3).
  const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc64))));
  const __m512i half =
      _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
                                         14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                        4);
  const __m512i k_lo = _mm512_add_epi16(half, half);  // 0 or 2
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512i acc = _mm512_setzero_si512();
  __m512i qh;
  if constexpr (kQ5) qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh)));
  for (int h = 0; h < 2; ++h) {
    const __m512i q = _mm512_loadu_si512(w.qs + 64 * h);
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    const __m512i ilo = _mm512_add_epi16(k_lo, _mm512_set1_epi16(int16_t(4 * h)));
    const __m512i ihi = _mm512_add_epi16(ilo, _mm512_set1_epi16(1));
    if constexpr (kQ5) {  // sub-block k takes bit k of qh[i]: shift each 256-bit half by its own count
      const __m512i one = _mm512_set1_epi8(1);
      lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, ilo), one), 4));
      hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, ihi), one), 4));
    }
    const __m512i alo = _mm512_loadu_si512(al + 128 * h), ahi = _mm512_loadu_si512(al + 128 * h + 64);
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(lo, alo), _mm512_permutexvar_epi16(ilo, sc16));
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(hi, ahi), _mm512_permutexvar_epi16(ihi, sc16));
  }
  *isum = acc;
  const __m128i pairs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(al + kQK));
  *msum = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn64))), pairs);
}

template <bool kQ5, class B>
TUNE_AVX512 TUNE_INLINE float q45_k_avx512_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const bool split = j.order == DotOrder::SplitMins;
  const auto* w = reinterpret_cast<const B*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  const int8_t* al = static_cast<const int8_t*>(ctx) + t * nb * kQ4kLayout;
  float c = 0, cm = 0;
  for (int64_t b = 0; b < nb; ++b) {
    __m512i isum;
    __m128i msum;
    q45_k_ints_avx512<kQ5>(w[b], al + b * kQ4kLayout, &isum, &msum);
    const __m128i ms = _mm_hadd_epi32(_mm_hadd_epi32(msum, msum), msum);
    step_k(c, cm, hsum16_epi32(isum), _mm_cvtsi128_si32(ms), h2f_avx2(w[b].d), h2f_avx2(w[b].dmin), a[b].d,
           split);
  }
  return split ? c - cm : c;
}

template <bool kQ5, class B>
TUNE_AVX512 TUNE_INLINE void q45_k_avx512_row4(const Job& j, const void* ctx, int64_t r, int64_t t,
                                               float* y) {
  const int64_t nb = j.cols / kQK;
  const bool split = j.order == DotOrder::SplitMins;
  const B* w[4];
  for (int i = 0; i < 4; ++i) w[i] = reinterpret_cast<const B*>(j.w + size_t(r + i) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  const int8_t* al = static_cast<const int8_t*>(ctx) + t * nb * kQ4kLayout;
  __m128 c = _mm_setzero_ps(), cm = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i is[4];
    __m128i ms[4];
    for (int i = 0; i < 4; ++i) q45_k_ints_avx512<kQ5>(w[i][b], al + b * kQ4kLayout, &is[i], &ms[i]);
    const __m128 isum = _mm_cvtepi32_ps(hsum4x16_epi32(is[0], is[1], is[2], is[3]));
    const __m128 msum =
        _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(ms[0], ms[1]), _mm_hadd_epi32(ms[2], ms[3])));
    const __m128 da = _mm_set1_ps(a[b].d);
    const __m128 dw = h2f4(w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d);
    const __m128 dmin = _mm_mul_ps(h2f4(w[0][b].dmin, w[1][b].dmin, w[2][b].dmin, w[3][b].dmin), da);
    c = _mm_fmadd_ps(isum, _mm_mul_ps(dw, da), c);
    if (split) {
      cm = _mm_fmadd_ps(msum, dmin, cm);
    } else {
      c = _mm_fmadd_ps(msum, _mm_xor_ps(dmin, _mm_set1_ps(-0.0f)), c);
    }
  }
  _mm_storeu_ps(y, split ? _mm_sub_ps(c, cm) : c);
}

template <bool kQ5, class B>
TUNE_AVX512 void q45_k_avx512(const Job& j) {
  const int64_t nb = j.cols / kQK;
  std::vector<uint8_t>& buf = scratch();
  buf.resize(size_t(j.nact * nb * kQ4kLayout));
  auto* lay = reinterpret_cast<int8_t*>(buf.data());
  for (int64_t t = 0; t < j.nact; ++t)
    q4k_layout_avx512(reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab), nb,
                      lay + t * nb * kQ4kLayout);
  for_rows4(j, q45_k_avx512_row4<kQ5, B>, q45_k_avx512_row<kQ5, B>, lay);
}

// The integer sum of one Q6_K block as a 16-lane vector (levels q − 32: the 32·Σ scale·bsum term is folded
// in).
TUNE_AVX512 TUNE_INLINE __m512i q6_k_ints_avx512(const BlockQ6K& w, const BlockQ8K& a) {
  const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
  // Per 256-bit half: shift counts of the 2-bit high parts (values 0-31 of a chunk take bits 0-1, 32-63 bits
  // 2-3, 64-95 bits 4-5, 96-127 bits 6-7 of qh).
  const __m512i s_lo = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
  const __m512i s_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
  const __m256i sc16y = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  const __m512i sc16 = _mm512_castsi256_si512(sc16y);
  // int16 lane i of the scale vector for values 64k .. 64k+63 holds the scale of group 4k + i / 8.
  const __m512i lane_group =
      _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
                                         14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                        3);
  __m512i acc = _mm512_setzero_si512();
  for (int c = 0; c < 2; ++c) {
    const __m512i ql = _mm512_loadu_si512(w.ql + 64 * c);
    const __m512i qh =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qh + 32 * c)));
    const __m512i lo = _mm512_or_si512(
        _mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, s_lo), m2), 4));
    const __m512i hi =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, s_hi), m2), 4));
    const __m512i alo = _mm512_loadu_si512(a.qs + 128 * c), ahi = _mm512_loadu_si512(a.qs + 128 * c + 64);
    const __m512i glo = _mm512_add_epi16(lane_group, _mm512_set1_epi16(int16_t(8 * c)));
    const __m512i ghi = _mm512_add_epi16(glo, _mm512_set1_epi16(4));
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(lo, alo), _mm512_permutexvar_epi16(glo, sc16));
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(hi, ahi), _mm512_permutexvar_epi16(ghi, sc16));
  }
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
  const __m256i comp = _mm256_slli_epi32(_mm256_madd_epi16(sc16y, bs), 5);
  return _mm512_sub_epi32(acc, _mm512_zextsi256_si512(comp));
}

TUNE_AVX512 TUNE_INLINE float q6_k_avx512_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const int64_t nb = j.cols / kQK;
  const auto* w = reinterpret_cast<const BlockQ6K*>(j.w + size_t(r) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  float c = 0;
  for (int64_t b = 0; b < nb; ++b)
    c = std::fma(float(hsum16_epi32(q6_k_ints_avx512(w[b], a[b]))), h2f_avx2(w[b].d) * a[b].d, c);
  return c;
}

TUNE_AVX512 TUNE_INLINE void q6_k_avx512_row4(const Job& j, const void* ctx, int64_t r, int64_t t, float* y) {
  const int64_t nb = j.cols / kQK;
  const BlockQ6K* w[4];
  for (int i = 0; i < 4; ++i) w[i] = reinterpret_cast<const BlockQ6K*>(j.w + size_t(r + i) * j.wb);
  const auto* a = reinterpret_cast<const BlockQ8K*>(j.a + size_t(t) * j.ab);
  __m128 c = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i is[4];
    for (int i = 0; i < 4; ++i) is[i] = q6_k_ints_avx512(w[i][b], a[b]);
    const __m128 isum = _mm_cvtepi32_ps(hsum4x16_epi32(is[0], is[1], is[2], is[3]));
    const __m128 dw = h2f4(w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d);
    c = _mm_fmadd_ps(isum, _mm_mul_ps(dw, _mm_set1_ps(a[b].d)), c);
  }
  _mm_storeu_ps(y, c);
}

TUNE_AVX512 void q6_k_avx512(const Job& j) {
  for_rows4(j, q6_k_avx512_row4, q6_k_avx512_row);
}

TUNE_AVX512 TUNE_INLINE float f16_avx512_row(const Job& j, const void* ctx, int64_t r, int64_t t) {
  const auto* w = reinterpret_cast<const uint16_t*>(j.w + size_t(r) * j.wb);
  const auto* x = reinterpret_cast<const float*>(j.a + size_t(t) * j.ab);
  __m512 c = _mm512_setzero_ps();
  for (int64_t k = 0; k < j.cols; k += 16) {
    const __m512 wv =
        _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k)));
    c = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), wv, c);
  }
  float l[16];
  _mm512_storeu_ps(l, c);
  return reduce16(l);
}

TUNE_AVX512 TUNE_INLINE void f16_avx512_row4(const Job& j, const void* ctx, int64_t r, int64_t t, float* y) {
  const uint16_t* w[4];
  for (int i = 0; i < 4; ++i) w[i] = reinterpret_cast<const uint16_t*>(j.w + size_t(r + i) * j.wb);
  const auto* x = reinterpret_cast<const float*>(j.a + size_t(t) * j.ab);
  __m512 c[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t k = 0; k < j.cols; k += 16) {
    const __m512 xv = _mm512_loadu_ps(x + k);
    for (int i = 0; i < 4; ++i)
      c[i] = _mm512_fmadd_ps(
          xv, _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i] + k))),
          c[i]);
  }
  for (int i = 0; i < 4; ++i) {
    float l[16];
    _mm512_storeu_ps(l, c[i]);
    y[i] = reduce16(l);
  }
}

TUNE_AVX512 void f16_avx512(const Job& j) {
  for_rows4(j, f16_avx512_row4, f16_avx512_row);
}

// ---- activation rows (AVX-512): the bytes of quant/dot.h's quantizers -----------------------------------

// quantize_row_q8_K_ref: the value of largest magnitude (the first one on ties) sets iscale = -127 / value;
// levels round(iscale · x) to nearest even, capped at 127; bsums per 16 values; d = 1 / iscale.
TUNE_AVX512 void quantize_q8k_avx512(const float* x, BlockQ8K* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    BlockQ8K& o = y[b];
    __m512 v[16], amax_v = _mm512_setzero_ps();
    for (int j = 0; j < 16; ++j) {
      v[j] = _mm512_loadu_ps(x + 16 * j);
      amax_v = _mm512_max_ps(amax_v, _mm512_abs_ps(v[j]));
    }
    const float amax = _mm512_reduce_max_ps(amax_v);
    if (amax == 0.0f) {
      o.d = 0;
      std::memset(o.qs, 0, sizeof o.qs);
      std::memset(o.bsums, 0, sizeof o.bsums);
      continue;
    }
    int first = 0;
    for (int j = 0; j < 16; ++j) {
      const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(v[j]), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (m) {
        first = 16 * j + __builtin_ctz(m);
        break;
      }
    }
    const float iscale = -127.f / x[first];
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int j = 0; j < 16; ++j) {
      const __m512 r =
          _mm512_roundscale_ps(_mm512_mul_ps(vs, v[j]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o.qs + 16 * j), _mm512_cvtsepi32_epi8(q));
      o.bsums[j] = int16_t(_mm512_reduce_add_epi32(q));
    }
    o.d = 1 / iscale;
  }
}

// x86 quantize_row_q8_0: d = max|x| / 127 (stored as f16), levels round(x · 127/max) to nearest even.
TUNE_AVX512 void quantize_q8_0_avx512(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += 32) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.f;
    const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    y[b].d = f32_to_f16(d);
    const __m512 lo =
        _mm512_roundscale_ps(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 hi =
        _mm512_roundscale_ps(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(lo)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(hi)));
  }
}

// ---- dispatch -------------------------------------------------------------------------------------------

using Kernel = void (*)(const Job&);

struct Kernels {
  Kernel scalar, avx2, avx512;
};

const Kernels* kernels_of(DType t) {
  static const Kernels q8_0{q8_0_scalar, q8_0_avx2, q8_0_avx512};
  static const Kernels q4_0{q4_0_scalar, q4_0_avx2, q4_0_avx2};
  static const Kernels q4_1{q4_1_scalar, q4_1_scalar, q4_1_scalar};
  static const Kernels q3_k{q3_k_scalar, q3_k_avx2, q3_k_avx2};
  static const Kernels q4_k{q45_k_scalar<false, BlockQ4K>, q45_k_avx2<false, BlockQ4K>,
                            q45_k_avx512<false, BlockQ4K>};
  static const Kernels q5_k{q45_k_scalar<true, BlockQ5K>, q45_k_avx2<true, BlockQ5K>,
                            q45_k_avx512<true, BlockQ5K>};
  static const Kernels q6_k{q6_k_scalar, q6_k_avx2, q6_k_avx512};
  static const Kernels f16{f16_scalar, f16_avx2, f16_avx512};
  switch (t) {
    case DType::Q8_0:
      return &q8_0;
    case DType::Q4_0:
      return &q4_0;
    case DType::Q4_1:
      return &q4_1;
    case DType::Q3_K:
      return &q3_k;
    case DType::Q4_K:
      return &q4_k;
    case DType::Q5_K:
      return &q5_k;
    case DType::Q6_K:
      return &q6_k;
    case DType::F16:
      return &f16;
    default:
      return nullptr;
  }
}

int64_t block_cols(DType t) {
  switch (t) {
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return kQK;
    case DType::F16:
      return 16;
    default:
      return 32;
  }
}

}  // namespace

bool vec_dot_fast_supported(DType wtype, int64_t cols, DotOrder order) {
  if (!kernels_of(wtype) || cols <= 0 || cols % block_cols(wtype) != 0) return false;
  return order == DotOrder::Standard || wtype == DType::Q4_K;
}

size_t vec_dot_fast_act_bytes(DType wtype, int64_t cols) {
  return wtype == DType::F16 ? size_t(cols) * 4 : vec_dot_act_row_bytes(wtype, cols);
}

void vec_dot_fast_prepare(DType wtype, const float* x, void* act, int64_t cols) {
  if (wtype == DType::F16) {
    std::memcpy(act, x, size_t(cols) * 4);
    return;
  }
  (void)vec_dot_act_row_bytes(wtype, cols);  // checks the type and the row length
  if (simd_level() == SimdLevel::Avx512) {
    switch (wtype) {
      case DType::Q3_K:
      case DType::Q4_K:
      case DType::Q5_K:
      case DType::Q6_K:
        quantize_q8k_avx512(x, static_cast<BlockQ8K*>(act), cols / kQK);
        return;
      case DType::Q8_0:
      case DType::Q4_0:
        quantize_q8_0_avx512(x, static_cast<BlockQ8_0*>(act), cols / 32);
        return;
      default:
        break;
    }
  }
  vec_dot_quantize_act(wtype, x, act, cols);
}

bool vec_dot_fast_plan(DType wtype, int64_t N, int64_t K, bool expert, DotOrder* order) {
  *order = DotOrder::Standard;
  if (wtype == DType::Q3_K) return vec_dot_fast_supported(wtype, K);
  if (expert) {
    *order = DotOrder::SplitMins;
    return wtype == DType::Q4_K && N % 8 == 0 && vec_dot_fast_supported(wtype, K, *order);
  }
  return N % 32 == 0 && vec_dot_fast_supported(wtype, K);
}

void vec_dot_fast(DType wtype, DotOrder order, const void* w, size_t w_row_bytes, int64_t rows,
                  const void* act, size_t act_row_bytes, int64_t nact, int64_t cols, float* y,
                  int64_t y_stride) {
  if (!vec_dot_fast_supported(wtype, cols, order))
    throw UnsupportedError(std::string("vec_dot_fast: no kernel for ") + dtype_name(wtype) + " rows of " +
                           std::to_string(cols) + " values");
  const Job j{static_cast<const uint8_t*>(w),
              w_row_bytes,
              rows,
              static_cast<const uint8_t*>(act),
              act_row_bytes,
              nact,
              cols,
              y,
              y_stride,
              order};
  const Kernels& k = *kernels_of(wtype);
  switch (simd_level()) {
    case SimdLevel::Avx512:
      k.avx512(j);
      return;
    case SimdLevel::Avx2:
      k.avx2(j);
      return;
    case SimdLevel::Scalar:
      k.scalar(j);
      return;
  }
}

namespace {

// The activation format a weight type reads: 0 = f32 (F16 weights), else the vec_dot activation type.
int act_kind(DType t) {
  switch (t) {
    case DType::F16:
      return 0;
    case DType::Q4_1:
      return 2;
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return 3;
    default:
      return 1;  // Q8_0 activations
  }
}

}  // namespace

void vec_dot_fast_matmul(const float* x, int64_t T, int64_t K, std::span<const FastMatmul> mats) {
  // Activation rows, one buffer per format in use (f32 weights read x itself).
  const DType kind_type[4] = {DType::F16, DType::Q8_0, DType::Q4_1, DType::Q4_K};
  std::vector<uint8_t> act[4];
  size_t act_bytes[4] = {size_t(K) * 4, 0, 0, 0};
  for (const FastMatmul& m : mats) {
    TUNE_CHECK(vec_dot_fast_supported(m.wtype, K, m.order)) << dtype_name(m.wtype) << " rows of " << K;
    const int k = act_kind(m.wtype);
    if (k == 0 || !act[k].empty()) continue;
    act_bytes[k] = vec_dot_fast_act_bytes(kind_type[k], K);
    act[k].resize(act_bytes[k] * size_t(T));
  }
  for (int k = 1; k < 4; ++k) {
    if (act[k].empty()) continue;
    parallel_for(T, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        vec_dot_fast_prepare(kind_type[k], x + t * K, act[k].data() + size_t(t) * act_bytes[k], K);
    });
  }
  // Work units: blocks of kRowBlock rows over all matrices. Each thread takes runs of them from a shared
  // counter (about 8 runs per thread) and makes one call per matrix a run touches: a thread that the OS holds
  // back (a busy machine) leaves its share to the others instead of stalling the product.
  std::vector<int64_t> first(mats.size() + 1, 0);
  for (size_t i = 0; i < mats.size(); ++i) first[i + 1] = first[i] + (mats[i].N + kRowBlock - 1) / kRowBlock;
  auto run = [&](int64_t u0, int64_t u1) {
    for (size_t i = 0; i < mats.size(); ++i) {
      const int64_t b0 = std::max(u0, first[i]), b1 = std::min(u1, first[i + 1]);
      if (b0 >= b1) continue;
      const FastMatmul& m = mats[i];
      const int k = act_kind(m.wtype);
      const int64_t r0 = (b0 - first[i]) * kRowBlock, r1 = std::min(m.N, (b1 - first[i]) * kRowBlock);
      const size_t wb = dtype_bytes(m.wtype, K);
      const void* a = k == 0 ? static_cast<const void*>(x) : act[k].data();
      if (m.packed) {
        m.packed->dot(r0, r1, a, act_bytes[k], T, m.y, m.N);
      } else {
        vec_dot_fast(m.wtype, m.order, static_cast<const uint8_t*>(m.w) + size_t(r0) * wb, wb, r1 - r0, a,
                     act_bytes[k], T, K, m.y + r0, m.N);
      }
      if (m.bias)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t r = r0; r < r1; ++r) m.y[t * m.N + r] += m.bias[r];
    }
  };
  const int64_t units = first.back(), threads = num_threads();
  const int64_t run_units = std::max<int64_t>(1, units / (8 * threads));
  std::atomic<int64_t> next{0};
  parallel_for(std::min(threads, units), [&](int64_t, int64_t) {
    for (int64_t u0; (u0 = next.fetch_add(run_units)) < units;) run(u0, std::min(units, u0 + run_units));
  });
}

}  // namespace tune

#pragma GCC diagnostic pop
