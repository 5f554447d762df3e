// The SIMD fast path of the quantized matrix products (quant/dot_fast.h) against the scalar reference
// (quant/dot.h): (1) every SIMD level the CPU has (scalar, AVX2, AVX-512) gives the same bits, on random
// blocks of every type, several weight and activation rows at once; (2) each result equals the reference
// vec_dot on the same quantized rows within float-summation rounding (both sum the same exact integer block
// products; they differ only in the order of a few float steps per block: bound 2e-6 of Σ|w·a| over the row,
// ~10x the largest difference seen, 1.6e-7); F16, whose fast path keeps the activations in f32, is compared
// with the exact double product instead; (3) vec_dot_fast_matmul (threaded, several matrices, bias) equals
// per-row calls.
#include "quant/dot_fast.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "quant/cpu_features.h"
#include "quant/dot.h"
#include "quant/dot_packed.h"
#include "quant/quant.h"

namespace tune {

namespace {

struct Case {
  DType type;
  DotOrder order;
};

const Case kCases[] = {
    {DType::Q8_0, DotOrder::Standard}, {DType::Q4_0, DotOrder::Standard}, {DType::Q4_1, DotOrder::Standard},
    {DType::Q3_K, DotOrder::Standard}, {DType::Q4_K, DotOrder::Standard}, {DType::Q4_K, DotOrder::SplitMins},
    {DType::Q5_K, DotOrder::Standard}, {DType::Q6_K, DotOrder::Standard}, {DType::F16, DotOrder::Standard}};

std::vector<float> random_rows(Rng& rng, int64_t n, float scale, float offset) {
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = offset + scale * rng.normal();
  return x;
}

struct Data {
  std::vector<uint8_t> w, act;
  size_t wb = 0, ab = 0;
};

// rows x K weights and nact x K activations in the formats of `t`; row r gets an offset so the min terms of
// Q4_1 / Q4_K / Q5_K matter, and one activation block of zeros exercises zero scales.
Data make(Rng& rng, DType t, int64_t rows, int64_t nact, int64_t K) {
  Data d;
  d.wb = quant_row_bytes(t, K);
  d.ab = vec_dot_fast_act_bytes(t, K);
  d.w.resize(d.wb * size_t(rows));
  d.act.resize(d.ab * size_t(nact));
  for (int64_t r = 0; r < rows; ++r) {
    const auto w = random_rows(rng, K, 0.05f, r % 3 == 1 ? 0.02f : 0.0f);
    quantize_rows(t, w.data(), d.w.data() + size_t(r) * d.wb, 1, K);
  }
  for (int64_t a = 0; a < nact; ++a) {
    auto x = random_rows(rng, K, 1.5f, a % 2 ? -0.4f : 0.0f);
    if (a == 1)
      for (int64_t i = 0; i < std::min<int64_t>(K, 256); ++i) x[size_t(i)] = 0;
    vec_dot_fast_prepare(t, x.data(), d.act.data() + size_t(a) * d.ab, K);
  }
  return d;
}

std::vector<float> run(const Data& d, const Case& c, int64_t rows, int64_t nact, int64_t K, SimdLevel level) {
  set_simd_level(level);
  std::vector<float> y(static_cast<size_t>(rows * nact));
  vec_dot_fast(c.type, c.order, d.w.data(), d.wb, rows, d.act.data(), d.ab, nact, K, y.data(), rows);
  set_simd_level(SimdLevel::Avx512);
  return y;
}

TEST(DotFast, EveryLevelGivesTheSameBitsAndMatchesTheReference) {
  Rng rng(11);
  const int64_t K = 1024, rows = 37, nact = 3;  // rows not a multiple of the 16-row blocks
  std::vector<SimdLevel> levels = {SimdLevel::Scalar};
  if (simd_level_supported() >= SimdLevel::Avx2) levels.push_back(SimdLevel::Avx2);
  if (simd_level_supported() >= SimdLevel::Avx512) levels.push_back(SimdLevel::Avx512);
  std::printf("SIMD levels tested: %zu (the CPU supports %s)\n", levels.size(),
              simd_level_name(simd_level_supported()));
  for (const Case& c : kCases) {
    ASSERT_TRUE(vec_dot_fast_supported(c.type, K, c.order)) << dtype_name(c.type);
    const Data d = make(rng, c.type, rows, nact, K);
    const std::vector<float> y0 = run(d, c, rows, nact, K, SimdLevel::Scalar);
    for (SimdLevel l : levels) {
      const std::vector<float> y = run(d, c, rows, nact, K, l);
      EXPECT_EQ(std::memcmp(y.data(), y0.data(), y.size() * 4), 0)
          << dtype_name(c.type) << " at level " << simd_level_name(l) << " differs from the scalar code";
    }
    double worst = 0;
    for (int64_t a = 0; a < nact; ++a) {
      // Σ|w·a| from the dequantized rows bounds the float rounding of either summation order.
      std::vector<float> xd(static_cast<size_t>(K));
      if (c.type == DType::F16)
        std::memcpy(xd.data(), d.act.data() + size_t(a) * d.ab, size_t(K) * 4);
      else
        vec_dot_dequantize_act(c.type, d.act.data() + size_t(a) * d.ab, xd.data(), K);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> wd(static_cast<size_t>(K));
        dequantize_rows(c.type, d.w.data() + size_t(r) * d.wb, wd.data(), 1, K);
        double mag = 0, exact = 0;
        for (int64_t i = 0; i < K; ++i) {
          mag += std::fabs(double(wd[size_t(i)]) * xd[size_t(i)]);
          exact += double(wd[size_t(i)]) * xd[size_t(i)];
        }
        const double got = y0[size_t(a * rows + r)];
        double ref = exact;
        if (c.type != DType::F16) {
          std::vector<uint8_t> act(vec_dot_act_row_bytes(c.type, K));
          std::memcpy(act.data(), d.act.data() + size_t(a) * d.ab, act.size());
          ref = vec_dot(c.type, d.w.data() + size_t(r) * d.wb, act.data(), K);
        }
        worst = std::max(worst, std::fabs(got - ref) / (mag + 1e-30));
        EXPECT_LE(std::fabs(got - ref), 2e-6 * mag + 1e-9)
            << dtype_name(c.type) << " row " << r << " act " << a;
      }
    }
    std::printf("%-5s %-9s max |fast - reference| / sum|w a| = %.2e\n", dtype_name(c.type),
                c.order == DotOrder::Standard ? "standard" : "split", worst);
  }
}

TEST(DotFast, MatmulEqualsPerRowProducts) {
  Rng rng(5);
  const int64_t K = 512, T = 5;
  const std::vector<float> x = random_rows(rng, T * K, 1.0f, 0.0f);
  const DType types[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0};
  const int64_t Ns[] = {96, 64, 40};
  std::vector<std::vector<uint8_t>> ws(3);
  std::vector<std::vector<float>> ys(3), bias(3);
  std::vector<FastMatmul> mats;
  for (int i = 0; i < 3; ++i) {
    const auto w = random_rows(rng, Ns[i] * K, 0.05f, 0.0f);
    ws[size_t(i)].resize(quant_row_bytes(types[i], K) * size_t(Ns[i]));
    quantize_rows(types[i], w.data(), ws[size_t(i)].data(), Ns[i], K);
    ys[size_t(i)].assign(size_t(T * Ns[i]), 0.0f);
    bias[size_t(i)] = random_rows(rng, Ns[i], 0.1f, 0.0f);
    mats.push_back({ws[size_t(i)].data(), types[i], Ns[i], DotOrder::Standard, bias[size_t(i)].data(),
                    ys[size_t(i)].data()});
  }
  vec_dot_fast_matmul(x.data(), T, K, mats);
  for (int i = 0; i < 3; ++i) {
    const size_t wb = quant_row_bytes(types[i], K);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<uint8_t> act(vec_dot_fast_act_bytes(types[i], K));
      vec_dot_fast_prepare(types[i], x.data() + t * K, act.data(), K);
      for (int64_t r = 0; r < Ns[i]; ++r) {
        float y;
        vec_dot_fast(types[i], DotOrder::Standard, ws[size_t(i)].data() + size_t(r) * wb, wb, 1, act.data(),
                     act.size(), 1, K, &y, 1);
        EXPECT_EQ(ys[size_t(i)][size_t(t * Ns[i] + r)], y + bias[size_t(i)][size_t(r)])
            << dtype_name(types[i]);
      }
    }
  }
}

// The activation rows are quant/dot.h's bytes at every level: random rows, a row of zeros, ties of magnitude.
TEST(DotFast, PreparedActivationsAreTheReferenceBytes) {
  Rng rng(13);
  const int64_t K = 512;
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < 6; ++i) rows.push_back(random_rows(rng, K, i % 2 ? 3.0f : 0.01f, i == 3 ? 0.5f : 0.0f));
  rows.push_back(std::vector<float>(static_cast<size_t>(K), 0.0f));
  std::vector<float> ties = random_rows(rng, K, 1.0f, 0.0f);
  ties[7] = -9.0f;
  ties[100] = 9.0f;  // the same magnitude later in the block: the first one sets the sign of the scale
  ties[300] = 9.0f;
  ties[301] = -9.0f;
  rows.push_back(ties);
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    for (const auto& x : rows) {
      std::vector<uint8_t> ref(vec_dot_act_row_bytes(t, K));
      vec_dot_quantize_act(t, x.data(), ref.data(), K);
      for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
        if (l > simd_level_supported()) continue;
        set_simd_level(l);
        std::vector<uint8_t> got(vec_dot_fast_act_bytes(t, K));
        vec_dot_fast_prepare(t, x.data(), got.data(), K);
        set_simd_level(SimdLevel::Avx512);
        EXPECT_EQ(got, ref) << dtype_name(t) << " at " << simd_level_name(l);
      }
    }
  }
}

// The AVX-512 packed layout gives the bits of the row kernels.
TEST(DotFast, PackedWeightsGiveTheSameBits) {
  if (simd_level_supported() < SimdLevel::Avx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  Rng rng(9);
  const int64_t K = 768, rows = 48, nact = 3;
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    ASSERT_TRUE(PackedWeights::supported(t, rows, K));
    const Data d = make(rng, t, rows, nact, K);
    const size_t bytes = PackedWeights::bytes_for(t, rows, K);
    PackedArena arena(bytes);
    const PackedWeights p(t, d.w.data(), rows, K, arena.take(bytes));
    std::vector<float> y(static_cast<size_t>(rows * nact)), ref(y.size());
    p.dot(16, rows, d.act.data(), d.ab, nact, y.data(), rows);  // groups 1 and 2
    p.dot(0, 16, d.act.data(), d.ab, nact, y.data(), rows);
    vec_dot_fast(t, DotOrder::Standard, d.w.data(), d.wb, rows, d.act.data(), d.ab, nact, K, ref.data(),
                 rows);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0) << dtype_name(t);
  }
  EXPECT_FALSE(PackedWeights::supported(DType::Q4_K, 40, 768));  // not whole groups of 16 rows
  EXPECT_FALSE(PackedWeights::supported(DType::Q5_K, 48, 768));
}

TEST(DotFast, PlanFollowsLlamaCppKernelChoice) {
  DotOrder o;
  EXPECT_TRUE(vec_dot_fast_plan(DType::Q4_K, 1024, 1024, false, &o));
  EXPECT_EQ(o, DotOrder::Standard);
  EXPECT_FALSE(vec_dot_fast_plan(DType::Q4_K, 48, 1024, false, &o));  // not a multiple of 32 rows
  EXPECT_TRUE(vec_dot_fast_plan(DType::Q4_K, 768, 2048, true, &o));   // MoE expert: interleaved kernel
  EXPECT_EQ(o, DotOrder::SplitMins);
  EXPECT_FALSE(vec_dot_fast_plan(DType::Q6_K, 768, 2048, true, &o));
  EXPECT_TRUE(vec_dot_fast_plan(DType::Q3_K, 40, 256, false, &o));
  EXPECT_FALSE(vec_dot_fast_plan(DType::Q5_0, 1024, 1024, false, &o));
  EXPECT_FALSE(vec_dot_fast_plan(DType::F16, 64, 24, false, &o));  // F16 needs 16-column blocks
  EXPECT_THROW(vec_dot_fast(DType::Q5_1, DotOrder::Standard, nullptr, 0, 1, nullptr, 0, 1, 32, nullptr, 1),
               UnsupportedError);
}

}  // namespace

}  // namespace tune
