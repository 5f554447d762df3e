// attention_cached: the f16 kernels (scalar, AVX2+F16C+FMA, AVX-512) give identical bits: element-wise steps
// are the same IEEE operations whatever the vector width, and the f16 dot product keeps the 4 x 16 lane
// layout of ggml's AVX-512 build at every width.
#include "infer/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "quant/cpu_features.h"

namespace tune {

namespace {

// ---- f16 vector kernels ---------------------------------------------------------------------------------

struct F16Kernels {
  float (*dot)(const uint16_t* x, const uint16_t* y, int64_t n);    // f16·f16 in ggml's lane order
  void (*mad)(uint16_t* y, const uint16_t* x, float v, int64_t n);  // y = f16(fma(x, v, y))
  void (*scale)(uint16_t* y, float v, int64_t n);                   // y = f16(y * v)
  void (*to_f16)(const float* x, uint16_t* y, int64_t n);
};

// The reduction of 16 f32 lanes GCC emits for _mm512_reduce_add_ps: halves, quarters, then pairs.
inline float reduce16(const float* c) {
  float t3[8], t6[4];
  for (int i = 0; i < 8; ++i) t3[i] = c[i + 8] + c[i];
  for (int i = 0; i < 4; ++i) t6[i] = t3[i + 4] + t3[i];
  return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

// ggml_vec_dot_f16: blocks of 64 into 4 accumulators of 16 lanes (x*y of two f16 values is exact in f32, so
// fused or not is the same), accumulators combined (0+2)+(1+3), reduced, then the tail added in double.
float dot_f16_scalar(const uint16_t* x, const uint16_t* y, int64_t n) {
  const int64_t np = n & ~int64_t(63);
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) acc[j][l] += f16_to_f32(x[i + 16 * j + l]) * f16_to_f32(y[i + 16 * j + l]);
  float c[16];
  for (int l = 0; l < 16; ++l) c[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  double sum = reduce16(c);
  for (int64_t i = np; i < n; ++i) sum += double(f16_to_f32(x[i]) * f16_to_f32(y[i]));
  return float(sum);
}

void mad_f16_scalar(uint16_t* y, const uint16_t* x, float v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(std::fma(f16_to_f32(x[i]), v, f16_to_f32(y[i])));
}

void scale_f16_scalar(uint16_t* y, float v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(f16_to_f32(y[i]) * v);
}

void to_f16_scalar(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

#define TUNE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TUNE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

TUNE_AVX2 inline __m256 load8h(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
TUNE_AVX2 inline void store8h(uint16_t* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

TUNE_AVX2 float dot_f16_avx2(const uint16_t* x, const uint16_t* y, int64_t n) {
  const int64_t np = n & ~int64_t(63);
  __m256 acc[4][2];
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const int64_t o = i + 16 * j + 8 * h;
        acc[j][h] = _mm256_fmadd_ps(load8h(x + o), load8h(y + o), acc[j][h]);
      }
  float c[16];
  for (int h = 0; h < 2; ++h)
    _mm256_storeu_ps(c + 8 * h,
                     _mm256_add_ps(_mm256_add_ps(acc[0][h], acc[2][h]), _mm256_add_ps(acc[1][h], acc[3][h])));
  double sum = reduce16(c);
  for (int64_t i = np; i < n; ++i) sum += double(f16_to_f32(x[i]) * f16_to_f32(y[i]));
  return float(sum);
}

TUNE_AVX2 void mad_f16_avx2(uint16_t* y, const uint16_t* x, float v, int64_t n) {
  const __m256 vv = _mm256_set1_ps(v);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8h(y + i, _mm256_fmadd_ps(load8h(x + i), vv, load8h(y + i)));
  for (; i < n; ++i) y[i] = f32_to_f16(std::fma(f16_to_f32(x[i]), v, f16_to_f32(y[i])));
}

TUNE_AVX2 void scale_f16_avx2(uint16_t* y, float v, int64_t n) {
  const __m256 vv = _mm256_set1_ps(v);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8h(y + i, _mm256_mul_ps(load8h(y + i), vv));
  for (; i < n; ++i) y[i] = f32_to_f16(f16_to_f32(y[i]) * v);
}

TUNE_AVX2 void to_f16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8h(y + i, _mm256_loadu_ps(x + i));
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

// The masked forms: GCC 12 warns on the unmasked ones' undefined pass-through operand.
TUNE_AVX512 inline __m512 load16h(const uint16_t* p) {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
TUNE_AVX512 inline void store16h(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_maskz_cvtps_ph(0xFFFF, v, _MM_FROUND_TO_NEAREST_INT));
}

TUNE_AVX512 float dot_f16_avx512(const uint16_t* x, const uint16_t* y, int64_t n) {
  const int64_t np = n & ~int64_t(63);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      acc[j] = _mm512_fmadd_ps(load16h(x + i + 16 * j), load16h(y + i + 16 * j), acc[j]);
  float c[16];
  _mm512_storeu_ps(c, _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
  double sum = reduce16(c);
  for (int64_t i = np; i < n; ++i) sum += double(f16_to_f32(x[i]) * f16_to_f32(y[i]));
  return float(sum);
}

TUNE_AVX512 void mad_f16_avx512(uint16_t* y, const uint16_t* x, float v, int64_t n) {
  const __m512 vv = _mm512_set1_ps(v);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16h(y + i, _mm512_fmadd_ps(load16h(x + i), vv, load16h(y + i)));
  for (; i < n; ++i) y[i] = f32_to_f16(std::fma(f16_to_f32(x[i]), v, f16_to_f32(y[i])));
}

TUNE_AVX512 void scale_f16_avx512(uint16_t* y, float v, int64_t n) {
  const __m512 vv = _mm512_set1_ps(v);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16h(y + i, _mm512_mul_ps(load16h(y + i), vv));
  for (; i < n; ++i) y[i] = f32_to_f16(f16_to_f32(y[i]) * v);
}

TUNE_AVX512 void to_f16_avx512(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16h(y + i, _mm512_loadu_ps(x + i));
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

const F16Kernels& f16_kernels() {
  static const F16Kernels kScalar{dot_f16_scalar, mad_f16_scalar, scale_f16_scalar, to_f16_scalar};
  static const F16Kernels kAvx2{dot_f16_avx2, mad_f16_avx2, scale_f16_avx2, to_f16_avx2};
  static const F16Kernels kAvx512{dot_f16_avx512, mad_f16_avx512, scale_f16_avx512, to_f16_avx512};
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return kAvx512;
    case SimdLevel::Avx2:
      return kAvx2;
    case SimdLevel::Scalar:
      break;
  }
  return kScalar;
}

// ---- one query row, f16 cache ---------------------------------------------------------------------------

struct Partial {
  float M = -INFINITY;  // running max of the scores
  float S = 0;          // running sum of exp(score - M)
};

// Accumulates cache rows [j0, j1) (kv head at element offset `kv_off`) into the f16 sum `vkq` (hd) and `st`.
void row_f16(const F16Kernels& kn, const KvCache& cache, int64_t layer, int64_t kv_off, const uint16_t* q16,
             int64_t j0, int64_t j1, int64_t hd, float scale, uint16_t* vkq, Partial& st) {
  for (int64_t j = j0; j < j1; ++j) {
    const auto* kr = static_cast<const uint16_t*>(cache.k_row(layer, j)) + kv_off;
    const auto* vr = static_cast<const uint16_t*>(cache.v_row(layer, j)) + kv_off;
    const float s = kn.dot(kr, q16, hd) * scale;
    float vs = 1.0f;
    if (s > st.M) {  // new maximum: rescale what was accumulated
      const float ms = std::exp(st.M - s);
      st.M = s;
      kn.scale(vkq, ms, hd);
      st.S = st.S * ms;
    } else {
      vs = std::exp(s - st.M);
    }
    kn.mad(vkq, vr, vs, hd);
    st.S = st.S + vs;
  }
}

// ---- one query row, prefill (f32) -----------------------------------------------------------------------

constexpr int64_t kTile = 64;  // ggml's flash-attention tile (GGML_FA_TILE_Q and _KV)

void row_tiled(const KvCache& cache, int64_t layer, int64_t kv_off, const float* q, int64_t n, int64_t hd,
               float scale, float* acc, float* kq, float* kf) {
  float M = -INFINITY, S = 0;
  std::fill(acc, acc + hd, 0.0f);
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t m = std::min(kTile, n - t0);
    float tile_max = -INFINITY;
    for (int64_t jj = 0; jj < kTile; ++jj) {
      if (jj >= m) {
        kq[jj] = -INFINITY;
        continue;
      }
      const auto* kr = static_cast<const uint16_t*>(cache.k_row(layer, t0 + jj)) + kv_off;
      float s = 0;
      for (int64_t d = 0; d < hd; ++d) s = std::fma(q[d], f16_to_f32(kr[d]), s);
      kq[jj] = s * scale;
      tile_max = std::max(tile_max, kq[jj]);
    }
    const float Mnew = std::max(M, tile_max);
    if (Mnew > M) {
      const float ms = std::exp(M - Mnew);
      for (int64_t d = 0; d < hd; ++d) acc[d] *= ms;
      S *= ms;
    }
    M = Mnew;
    double sum = 0;
    for (int64_t c = 0; c < kTile; c += 16) {
      for (int64_t jj = c; jj < c + 16; ++jj) kq[jj] = std::exp(kq[jj] - M);
      sum += double(reduce16(kq + c));
    }
    S = float(double(S) + sum);
    for (int64_t jj = 0; jj < m; ++jj) {
      const auto* vr = static_cast<const uint16_t*>(cache.v_row(layer, t0 + jj)) + kv_off;
      for (int64_t d = 0; d < hd; ++d) kf[jj * hd + d] = f16_to_f32(vr[d]);
    }
    for (int64_t d = 0; d < hd; ++d) {
      float a = acc[d];
      for (int64_t jj = 0; jj < m; ++jj) a = std::fma(kq[jj], kf[jj * hd + d], a);
      acc[d] = a;
    }
  }
  const float inv = S == 0.0f ? 0.0f : 1.0f / S;
  for (int64_t d = 0; d < hd; ++d) acc[d] *= inv;
}

// The same arithmetic for a block of up to 8 query rows of one head with AVX2: the scores of the 8 rows for
// one key in one register (each lane the sequential fma chain over the head dimension), the values added with
// 8 dimensions per register; keys and values of a tile converted to f32 once for the block.
struct TiledScratch {
  std::vector<float> qt, kf, vf, kq, acc;
  explicit TiledScratch(int64_t hd)
      : qt(static_cast<size_t>(8 * hd)),
        kf(static_cast<size_t>(kTile * hd)),
        vf(static_cast<size_t>(kTile * hd)),
        kq(static_cast<size_t>(8 * kTile)),
        acc(static_cast<size_t>(8 * hd)) {}
};

// q: R rows `q_stride` apart (one head); n[r]: keys row r sees; out: R rows `out_stride` apart.
TUNE_AVX2 void block_tiled_avx2(const KvCache& cache, int64_t layer, int64_t kv_off, const float* q,
                                int64_t q_stride, const int64_t* n, int R, int64_t hd, float scale,
                                float* out, int64_t out_stride, TiledScratch& w) {
  float M[8], S[8];
  for (int r = 0; r < 8; ++r) {
    M[r] = -INFINITY;
    S[r] = 0;
    for (int64_t d = 0; d < hd; ++d) w.qt[size_t(d * 8 + r)] = r < R ? q[r * q_stride + d] : 0.0f;
  }
  std::fill(w.acc.begin(), w.acc.end(), 0.0f);
  const int64_t n_max = *std::max_element(n, n + R);
  for (int64_t t0 = 0; t0 < n_max; t0 += kTile) {
    const int64_t mt = std::min(kTile, n_max - t0);
    for (int64_t jj = 0; jj < mt; ++jj) {
      const auto* kr = static_cast<const uint16_t*>(cache.k_row(layer, t0 + jj)) + kv_off;
      const auto* vr = static_cast<const uint16_t*>(cache.v_row(layer, t0 + jj)) + kv_off;
      for (int64_t d = 0; d < hd; d += 8) {
        _mm256_storeu_ps(&w.kf[size_t(jj * hd + d)], load8h(kr + d));
        _mm256_storeu_ps(&w.vf[size_t(jj * hd + d)], load8h(vr + d));
      }
      __m256 s = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd; ++d)
        s = _mm256_fmadd_ps(_mm256_loadu_ps(&w.qt[size_t(d * 8)]), _mm256_set1_ps(w.kf[size_t(jj * hd + d)]),
                            s);
      float sc[8];
      _mm256_storeu_ps(sc, s);
      for (int r = 0; r < 8; ++r) w.kq[size_t(r * kTile + jj)] = sc[r];
    }
    for (int r = 0; r < R; ++r) {
      const int64_t m = std::min(kTile, n[r] - t0);  // keys of this tile row r sees
      if (m <= 0) continue;
      float* kq = &w.kq[size_t(r * kTile)];
      float* acc = &w.acc[size_t(r * hd)];
      float tile_max = -INFINITY;
      for (int64_t jj = 0; jj < kTile; ++jj) {
        kq[jj] = jj < m ? kq[jj] * scale : -INFINITY;
        tile_max = std::max(tile_max, kq[jj]);
      }
      const float Mnew = std::max(M[r], tile_max);
      if (Mnew > M[r]) {
        const float ms = std::exp(M[r] - Mnew);
        for (int64_t d = 0; d < hd; ++d) acc[d] *= ms;
        S[r] *= ms;
      }
      M[r] = Mnew;
      double sum = 0;
      for (int64_t c = 0; c < kTile; c += 16) {
        for (int64_t jj = c; jj < c + 16; ++jj) kq[jj] = std::exp(kq[jj] - Mnew);
        sum += double(reduce16(kq + c));
      }
      S[r] = float(double(S[r]) + sum);
      for (int64_t d = 0; d < hd; d += 8) {
        __m256 a = _mm256_loadu_ps(acc + d);
        for (int64_t jj = 0; jj < m; ++jj)
          a = _mm256_fmadd_ps(_mm256_set1_ps(kq[jj]), _mm256_loadu_ps(&w.vf[size_t(jj * hd + d)]), a);
        _mm256_storeu_ps(acc + d, a);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const float inv = S[r] == 0.0f ? 0.0f : 1.0f / S[r];
    for (int64_t d = 0; d < hd; ++d) out[r * out_stride + d] = w.acc[size_t(r * hd + d)] * inv;
  }
}

// ---- one query row, f32 cache (exact, in double) --------------------------------------------------------

void row_f32(const KvCache& cache, int64_t layer, int64_t kv_off, const float* q, int64_t n, int64_t hd,
             double scale, double* p, double* acc, float* out) {
  double mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float* kr = static_cast<const float*>(cache.k_row(layer, j)) + kv_off;
    double s = 0;
    for (int64_t d = 0; d < hd; ++d) s += double(q[d]) * kr[d];
    p[j] = s * scale;
    mx = std::max(mx, p[j]);
  }
  double sum = 0;
  std::fill(acc, acc + hd, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const double e = std::exp(p[j] - mx);
    sum += e;
    const float* vr = static_cast<const float*>(cache.v_row(layer, j)) + kv_off;
    for (int64_t d = 0; d < hd; ++d) acc[d] += e * vr[d];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = float(acc[d] / sum);
}

}  // namespace

void attention_cached(const KvCache& cache, int64_t layer, const float* q, int64_t T, int64_t pos0,
                      int64_t nH, int64_t nKV, int64_t hd, float scale, float* out) {
  TUNE_CHECK(nH % nKV == 0 && cache.kv_dim() == nKV * hd) << "attention head layout";
  const int64_t group = nH / nKV;
  auto kv_off = [&](int64_t h) { return (h / group) * hd; };

  if (cache.type() == DType::F32) {
    parallel_for(T * nH, [&](int64_t i0, int64_t i1) {
      std::vector<double> p(static_cast<size_t>(pos0 + T)), acc(static_cast<size_t>(hd));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t t = i / nH, h = i % nH;
        row_f32(cache, layer, kv_off(h), q + i * hd, pos0 + t + 1, hd, double(scale), p.data(), acc.data(),
                out + i * hd);
      }
    });
    return;
  }

  const F16Kernels& kn = f16_kernels();
  if (T >= kTile && hd % 16 == 0) {  // llama.cpp's tiled f32 path (DV a multiple of the AVX-512 width)
    if (simd_level() == SimdLevel::Scalar) {
      parallel_for(T * nH, [&](int64_t i0, int64_t i1) {
        std::vector<float> kq(static_cast<size_t>(kTile)), kf(static_cast<size_t>(kTile * hd));
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t t = i / nH, h = i % nH;
          float* o = out + i * hd;
          row_tiled(cache, layer, kv_off(h), q + i * hd, pos0 + t + 1, hd, scale, o, kq.data(), kf.data());
        }
      });
      return;
    }
    // Blocks of 8 query rows of one head.
    const int64_t blocks = (T + 7) / 8;
    parallel_for(blocks * nH, [&](int64_t i0, int64_t i1) {
      TiledScratch w(hd);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / nH, h = i % nH, t = 8 * b;
        const int R = int(std::min<int64_t>(8, T - t));
        int64_t n[8];
        for (int r = 0; r < R; ++r) n[r] = pos0 + t + r + 1;
        block_tiled_avx2(cache, layer, kv_off(h), q + (t * nH + h) * hd, nH * hd, n, R, hd, scale,
                         out + (t * nH + h) * hd, nH * hd, w);
      }
    });
    return;
  }

  const int64_t n = pos0 + T;  // rows in the cache after this batch
  const int64_t n_kv = std::min(cache.capacity(), std::max<int64_t>(256, (n + 255) / 256 * 256));
  if (T == 1 && n_kv >= 512) {  // split decode step: one chunk of cache rows per thread, combined in f32
    const int64_t nth = num_threads(), chunk = (n_kv + nth - 1) / nth;
    std::vector<float> vk(static_cast<size_t>(nth * nH * hd));
    std::vector<Partial> part(static_cast<size_t>(nth * nH));
    parallel_for(nth, [&](int64_t c0, int64_t c1) {
      std::vector<uint16_t> q16(static_cast<size_t>(hd)), acc(static_cast<size_t>(hd));
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t j0 = c * chunk, j1 = std::min(n, (c + 1) * chunk);
        for (int64_t h = 0; h < nH; ++h) {
          Partial& st = part[size_t(c * nH + h)];
          if (j0 >= j1) continue;
          kn.to_f16(q + h * hd, q16.data(), hd);
          std::fill(acc.begin(), acc.end(), uint16_t(0));
          row_f16(kn, cache, layer, kv_off(h), q16.data(), j0, j1, hd, scale, acc.data(), st);
          float* dst = vk.data() + (c * nH + h) * hd;
          for (int64_t d = 0; d < hd; ++d) dst[d] = f16_to_f32(acc[size_t(d)]);
        }
      }
    });
    for (int64_t h = 0; h < nH; ++h) {
      float M = -INFINITY, S = 0;
      float* o = out + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t c = 0; c < nth; ++c) {
        const Partial& st = part[size_t(c * nH + h)];
        if (st.S == 0.0f) continue;
        const float Mn = std::max(M, st.M), so = std::exp(M - Mn), sn = std::exp(st.M - Mn);
        const float* v = vk.data() + (c * nH + h) * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = o[d] * so + v[d] * sn;
        S = S * so + st.S * sn;
        M = Mn;
      }
      if (S != 0.0f) {
        const float inv = 1.0f / S;
        for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
      }
    }
    return;
  }

  parallel_for(T * nH, [&](int64_t i0, int64_t i1) {
    std::vector<uint16_t> q16(static_cast<size_t>(hd)), acc(static_cast<size_t>(hd));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / nH, h = i % nH;
      kn.to_f16(q + i * hd, q16.data(), hd);
      std::fill(acc.begin(), acc.end(), uint16_t(0));
      Partial st;
      row_f16(kn, cache, layer, kv_off(h), q16.data(), 0, pos0 + t + 1, hd, scale, acc.data(), st);
      const float inv = st.S == 0.0f ? 0.0f : 1.0f / st.S;
      float* o = out + i * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = f16_to_f32(acc[size_t(d)]) * inv;
    }
  });
}

}  // namespace tune
