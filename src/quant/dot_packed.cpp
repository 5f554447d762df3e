// PackedWeights: group layouts, per 16 rows (r) and per block; "zmm k" below is 64 bytes holding 4 bytes of
// each row, row r at bytes 4r..4r+3:
//   Q8_0 (544 bytes per block, as ggml's): zmm k = values 4k..4k+3 (k < 8) plus 128, as unsigned bytes (the
//     VNNI product wants one unsigned operand; 128 times the activation's block sum is subtracted once for
//     all rows); f16 d per row.
//   Q4_K (2368 bytes per 256-block): zmm 8c+k = qs bytes 32c+4k..+3 (low nibbles: sub-block 2c, high: 2c+1);
//     u8 scale, then u8 min, of sub-block j for the 16 rows (8 x 16 bytes each); f16 d and dmin per row.
//   Q6_K (3360 bytes per 256-block, as ggml's): zmm g (g < 32) = for values 4g+e the low 4 bits of value 4g+e
//     in the low nibble and of value 128+4g+e in the high nibble; zmm g (g < 16) of the second part = the top
//     2 bits of values 4g+e, 64+4g+e, 128+4g+e, 192+4g+e (bits 0-1, 2-3, 4-5, 6-7); int8 scale of group G for
//     the 16 rows (16 x 16 bytes); f16 d per row.
// Compiled without floating-point contraction (src/quant); the fused steps are explicit intrinsics.
#include "quant/dot_packed.h"

// GCC 12 reports the undefined pass-through operand of some AVX-512 intrinsics as possibly uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace tune {

namespace {

using namespace quant;

#define TUNE_INLINE inline __attribute__((always_inline))
#define TUNE_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

constexpr int64_t R = PackedWeights::kRows;
constexpr size_t kQ8_0Block = 8 * 64 + 32;
constexpr size_t kQ4KBlock = 32 * 64 + 128 + 128 + 32 + 32;
constexpr size_t kQ6KBlock = 32 * 64 + 16 * 64 + 256 + 32;

size_t block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0:
      return kQ8_0Block;
    case DType::Q4_K:
      return kQ4KBlock;
    case DType::Q6_K:
      return kQ6KBlock;
    default:
      return 0;
  }
}

int64_t block_cols(DType t) {
  return t == DType::Q8_0 ? 32 : kQK;
}

// ---- packing (scalar) -----------------------------------------------------------------------------------

void pack_q8_0(const BlockQ8_0* const rows[R], int64_t b, uint8_t* dst) {
  for (int r = 0; r < R; ++r) {
    const BlockQ8_0& x = rows[r][b];
    for (int i = 0; i < 32; ++i) dst[(i / 4) * 64 + r * 4 + i % 4] = uint8_t(x.qs[i]) ^ 0x80;  // w + 128
    std::memcpy(dst + 512 + 2 * r, &x.d, 2);
  }
}

void pack_q4_k(const BlockQ4K* const rows[R], int64_t b, uint8_t* dst) {
  for (int r = 0; r < R; ++r) {
    const BlockQ4K& x = rows[r][b];
    for (int i = 0; i < 128; ++i) dst[(i / 4) * 64 + r * 4 + i % 4] = x.qs[i];
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min(x.scales, j, &sc, &mn);
      dst[2048 + j * 16 + r] = sc;
      dst[2048 + 128 + j * 16 + r] = mn;
    }
    std::memcpy(dst + 2048 + 256 + 2 * r, &x.d, 2);
    std::memcpy(dst + 2048 + 256 + 32 + 2 * r, &x.dmin, 2);
  }
}

void pack_q6_k(const BlockQ6K* const rows[R], int64_t b, uint8_t* dst) {
  for (int r = 0; r < R; ++r) {
    const BlockQ6K& x = rows[r][b];
    uint8_t v[kQK];
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, seg = (i % 128) / 32, l = i % 32;
      const uint8_t* ql = x.ql + 64 * c;
      const int low = seg < 2 ? (ql[l + 32 * seg] & 15) : (ql[l + 32 * (seg - 2)] >> 4);
      v[i] = uint8_t(low | (((x.qh[32 * c + l] >> (2 * seg)) & 3) << 4));
    }
    for (int i = 0; i < 128; ++i)
      dst[(i / 4) * 64 + r * 4 + i % 4] = uint8_t((v[i] & 15) | ((v[128 + i] & 15) << 4));
    for (int i = 0; i < 64; ++i)
      dst[2048 + (i / 4) * 64 + r * 4 + i % 4] = uint8_t((v[i] >> 4) | ((v[64 + i] >> 4) << 2) |
                                                         ((v[128 + i] >> 4) << 4) | ((v[192 + i] >> 4) << 6));
    for (int g = 0; g < 16; ++g) dst[3072 + g * 16 + r] = uint8_t(x.scales[g]);
    std::memcpy(dst + 3072 + 256 + 2 * r, &x.d, 2);
  }
}

// ---- kernels (AVX-512) ----------------------------------------------------------------------------------

TUNE_AVX512 TUNE_INLINE __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Software prefetch of the block `ahead` bytes further on: the kernels do enough work per byte that the
// hardware prefetchers alone leave DRAM bandwidth unused.
TUNE_INLINE void prefetch(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}
constexpr size_t kAhead = 2048;

TUNE_AVX512 TUNE_INLINE __m512 h2f16(const uint8_t* p) {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Q8_0: a is read from the activation's blocks; per block 128·Σa (int32) and d_a (f32) come prepared.
TUNE_AVX512 void q8_0_group(const uint8_t* g, int64_t nb, const BlockQ8_0* a, const int32_t* suma,
                            const float* da, float* y) {
  __m512 c = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, g += kQ8_0Block) {
    prefetch(g + kAhead, kQ8_0Block);
    __m512i s = _mm512_setzero_si512();
    for (int k = 0; k < 8; ++k)
      s = _mm512_dpbusd_epi32(s, _mm512_loadu_si512(g + 64 * k), bcast4(a[b].qs + 4 * k));
    s = _mm512_sub_epi32(s, _mm512_set1_epi32(suma[b]));
    c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(h2f16(g + 512), _mm512_set1_ps(da[b])), c);
  }
  _mm512_storeu_ps(y, c);
}

// Q4_K: the activation's Q8_K blocks, and per block its 8 bsum pair sums (int32).
TUNE_AVX512 void q4_k_group(const uint8_t* g, int64_t nb, const BlockQ8K* a, const int32_t* pairs, float* y) {
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 c = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, g += kQ4KBlock) {
    prefetch(g + kAhead, kQ4KBlock);
    const int8_t* q8 = a[b].qs;
    __m512i acc = _mm512_setzero_si512();
    for (int ch = 0; ch < 4; ++ch) {
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const __m512i w = _mm512_loadu_si512(g + 64 * (8 * ch + k));
        lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(w, m4), bcast4(q8 + 64 * ch + 4 * k));
        hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(w, 4), m4),
                                 bcast4(q8 + 64 * ch + 32 + 4 * k));
      }
      const __m512i slo =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 2048 + 32 * ch)));
      const __m512i shi =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 2048 + 32 * ch + 16)));
      acc = _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_mullo_epi32(lo, slo), _mm512_mullo_epi32(hi, shi)));
    }
    __m512i ms = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const __m512i mn =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 2176 + 16 * j)));
      ms = _mm512_add_epi32(ms, _mm512_mullo_epi32(mn, _mm512_set1_epi32(pairs[8 * b + j])));
    }
    const __m512 da = _mm512_set1_ps(a[b].d);
    const __m512 dmin = _mm512_mul_ps(h2f16(g + 2336), da);
    c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(h2f16(g + 2304), da), c);
    const __m512 neg_dmin = _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(dmin), _mm512_set1_epi32(int32_t(0x80000000u))));
    c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), neg_dmin, c);
  }
  _mm512_storeu_ps(y, c);
}

TUNE_AVX512 void q6_k_group(const uint8_t* g, int64_t nb, const BlockQ8K* a, float* y) {
  const __m512i m4 = _mm512_set1_epi8(15), top = _mm512_set1_epi8(0x30);
  __m512 c = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, g += kQ6KBlock) {
    prefetch(g + kAhead, kQ6KBlock);
    const int8_t* q8 = a[b].qs;
    // Value 64q + 4kg + e (quarter q, 4-value group kg < 16) belongs to group G = 4q + kg / 4.
    __m512i s[16];
    for (auto& v : s) v = _mm512_setzero_si512();
    for (int kg = 0; kg < 16; ++kg) {
      const __m512i qh = _mm512_loadu_si512(g + 2048 + 64 * kg);
      const __m512i l0 = _mm512_loadu_si512(g + 64 * kg), l1 = _mm512_loadu_si512(g + 64 * (16 + kg));
      // The top 2 bits of quarter q moved to bits 4-5, then OR-ed with the low nibble: (A & 0x0F) | B.
      const __m512i t[4] = {_mm512_and_si512(_mm512_slli_epi16(qh, 4), top),
                            _mm512_and_si512(_mm512_slli_epi16(qh, 2), top), _mm512_and_si512(qh, top),
                            _mm512_and_si512(_mm512_srli_epi16(qh, 2), top)};
      const __m512i v[4] = {_mm512_ternarylogic_epi32(l0, t[0], m4, 0xEC),
                            _mm512_ternarylogic_epi32(l1, t[1], m4, 0xEC),
                            _mm512_ternarylogic_epi32(_mm512_srli_epi16(l0, 4), t[2], m4, 0xEC),
                            _mm512_ternarylogic_epi32(_mm512_srli_epi16(l1, 4), t[3], m4, 0xEC)};
      for (int q = 0; q < 4; ++q)
        s[4 * q + kg / 4] = _mm512_dpbusd_epi32(s[4 * q + kg / 4], v[q], bcast4(q8 + 64 * q + 4 * kg));
    }
    __m512i acc = _mm512_setzero_si512();
    for (int G = 0; G < 16; ++G) {  // levels q - 32: subtract 32 times the group's activation sum
      const __m512i sg = _mm512_sub_epi32(s[G], _mm512_set1_epi32(32 * a[b].bsums[G]));
      const __m512i sc =
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 3072 + 16 * G)));
      acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(sg, sc));
    }
    c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(h2f16(g + 3328), _mm512_set1_ps(a[b].d)), c);
  }
  _mm512_storeu_ps(y, c);
}

}  // namespace

bool PackedWeights::supported(DType type, int64_t rows, int64_t cols) {
  return block_bytes(type) > 0 && rows > 0 && rows % R == 0 && cols > 0 && cols % block_cols(type) == 0;
}

size_t PackedWeights::group_bytes() const {
  return size_t(cols_ / block_cols(type_)) * block_bytes(type_);
}

PackedArena::PackedArena(size_t bytes) : data_(nullptr, std::free) {
  constexpr size_t kHuge = size_t(2) << 20;
  size_ = (bytes + kHuge - 1) / kHuge * kHuge;
  if (size_ == 0) return;
  data_.reset(static_cast<uint8_t*>(std::aligned_alloc(kHuge, size_)));
  if (!data_) throw std::bad_alloc();
  madvise(data_.get(), size_, MADV_HUGEPAGE);  // a hint: failure leaves ordinary pages
}

uint8_t* PackedArena::take(size_t bytes) {
  const size_t n = (bytes + 63) / 64 * 64;
  TUNE_CHECK(used_ + n <= size_) << "packed arena of " << size_ << " bytes is full";
  uint8_t* p = data_.get() + used_;
  used_ += n;
  return p;
}

size_t PackedWeights::bytes_for(DType type, int64_t rows, int64_t cols) {
  return (size_t(cols / block_cols(type)) * block_bytes(type) * size_t(rows / R) + 63) / 64 * 64;
}

PackedWeights::PackedWeights(DType type, const void* w, int64_t rows, int64_t cols, uint8_t* storage)
    : type_(type), rows_(rows), cols_(cols), data_(storage) {
  TUNE_CHECK(supported(type, rows, cols))
      << "no packed layout for " << dtype_name(type) << " " << rows << "x" << cols;
  bytes_ = bytes_for(type, rows, cols);
  const size_t row_bytes = dtype_bytes(type, cols);
  const int64_t nb = cols / block_cols(type);
  const auto* src = static_cast<const uint8_t*>(w);
  parallel_for(rows / R, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const uint8_t* rp[R];
      for (int r = 0; r < R; ++r) rp[r] = src + size_t(g * R + r) * row_bytes;
      uint8_t* dst = data_ + size_t(g) * group_bytes();
      for (int64_t b = 0; b < nb; ++b, dst += block_bytes(type)) {
        switch (type) {
          case DType::Q8_0:
            pack_q8_0(reinterpret_cast<const BlockQ8_0* const*>(rp), b, dst);
            break;
          case DType::Q4_K:
            pack_q4_k(reinterpret_cast<const BlockQ4K* const*>(rp), b, dst);
            break;
          default:
            pack_q6_k(reinterpret_cast<const BlockQ6K* const*>(rp), b, dst);
            break;
        }
      }
    }
  });
}

void PackedWeights::dot(int64_t r0, int64_t r1, const void* act, size_t act_row_bytes, int64_t nact, float* y,
                        int64_t y_stride) const {
  TUNE_CHECK(r0 % R == 0 && r1 % R == 0 && 0 <= r0 && r0 <= r1 && r1 <= rows_)
      << "packed rows " << r0 << ".." << r1;
  const int64_t nb = cols_ / block_cols(type_);
  const auto* a8 = static_cast<const uint8_t*>(act);
  // Per activation row and block, what the kernels read besides the prepared row itself: for Q8_0 128·Σa and
  // d_a, for Q4_K the bsum pair sums.
  thread_local std::vector<int32_t> extra;
  if (type_ == DType::Q8_0) {
    extra.resize(size_t(nact * nb) * 2);
    for (int64_t t = 0; t < nact; ++t) {
      const auto* a = reinterpret_cast<const BlockQ8_0*>(a8 + size_t(t) * act_row_bytes);
      for (int64_t b = 0; b < nb; ++b) {
        int32_t sum = 0;
        for (int i = 0; i < 32; ++i) sum += a[b].qs[i];
        const float d = f16_to_f32(a[b].d);
        extra[size_t(t * nb + b)] = 128 * sum;
        std::memcpy(&extra[size_t(nact * nb + t * nb + b)], &d, 4);
      }
    }
  } else if (type_ == DType::Q4_K) {
    extra.resize(size_t(nact * nb) * 8);
    for (int64_t t = 0; t < nact; ++t) {
      const auto* a = reinterpret_cast<const BlockQ8K*>(a8 + size_t(t) * act_row_bytes);
      for (int64_t b = 0; b < nb; ++b)
        for (int j = 0; j < 8; ++j)
          extra[size_t((t * nb + b) * 8 + j)] = a[b].bsums[2 * j] + a[b].bsums[2 * j + 1];
    }
  }
  for (int64_t g = r0 / R; g < r1 / R; ++g) {
    const uint8_t* gp = data_ + size_t(g) * group_bytes();
    for (int64_t t = 0; t < nact; ++t) {
      float* yo = y + t * y_stride + g * R;
      const uint8_t* at = a8 + size_t(t) * act_row_bytes;
      switch (type_) {
        case DType::Q8_0:
          q8_0_group(gp, nb, reinterpret_cast<const BlockQ8_0*>(at), extra.data() + t * nb,
                     reinterpret_cast<const float*>(extra.data() + nact * nb + t * nb), yo);
          break;
        case DType::Q4_K:
          q4_k_group(gp, nb, reinterpret_cast<const BlockQ8K*>(at), extra.data() + t * nb * 8, yo);
          break;
        default:
          q6_k_group(gp, nb, reinterpret_cast<const BlockQ8K*>(at), yo);
          break;
      }
    }
  }
}

}  // namespace tune

#pragma GCC diagnostic pop
