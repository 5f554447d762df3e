// Block quantization: block sizes, round-trip error bounds per type, importance weights lowering the weighted
// error, f16/bf16 rounding, argument errors, and byte identity with ggml on committed vectors
// (tests/data/quant/ggml_vectors.txt, made by ggml itself; docs/quant_check.md has the full check).
#include "quant/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.h"
#include "io/gguf.h"

namespace tune {

namespace {

const DType kBlockTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                             DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Test inputs built from Rng::uniform() with exact IEEE float arithmetic only, so they are the same bits on
// every platform; the same generator made ggml_vectors.txt. Kinds cover the quantizers' edge cases.
void make_row(Rng& rng, int kind, float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float u = rng.uniform();
    switch (kind % 10) {
      case 0:
        x[i] = (u + rng.uniform() + rng.uniform() + rng.uniform() - 2.0f) * 0.05f;
        break;   // ~normal
      case 1: {  // heavy tail, a zero sub-block and an outlier
        const float v = u - 0.5f;
        x[i] = i < 16 ? 0.0f : v * v * v * 8.0f;
        if (i == n / 2 + 3) x[i] = 3.5f;
        break;
      }
      case 2:
        x[i] = -(u * 0.3f + 0.01f);
        break;  // all negative
      case 3:
        x[i] = (u - 0.5f) * 1e-6f;
        break;  // f16-subnormal scales
      case 4:
        x[i] = u * 2.0f + 1.0f;
        break;  // all positive, offset
      case 5:
        x[i] = (i % 7 == 0) ? (u - 0.5f) * 40.0f : (u - 0.5f) * 0.01f;
        break;  // sparse outliers
      case 6:
        x[i] = 0.0f;
        break;  // all zero
      case 7:
        x[i] = 0.37f;
        break;  // constant
      case 8:
        x[i] = (u - 0.5f) * 2e4f;
        break;  // large
      case 9:
        x[i] = float(int(u * 16.0f) - 8) * 0.125f;
        break;  // on a grid: rounding ties
    }
  }
}
void make_importance(Rng& rng, float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float u = rng.uniform();
    w[i] = u < 0.05f ? 0.0f : u * u * 4.0f + 0.001f;
  }
}

bool dtype_from_name(const std::string& s, DType* out) {
  for (int i = 0; i <= int(DType::Q5_1); ++i) {
    if (s == dtype_name(DType(i))) {
      *out = DType(i);
      return true;
    }
  }
  return false;
}

std::vector<float> normal_matrix(uint64_t seed, int64_t rows, int64_t cols, float std) {
  Rng rng(seed);
  std::vector<float> x(size_t(rows * cols));
  for (float& v : x) v = rng.normal() * std;
  return x;
}

std::vector<float> round_trip(DType t, const std::vector<float>& x, int64_t rows, int64_t cols,
                              const float* imp = nullptr) {
  std::vector<uint8_t> q(quant_row_bytes(t, cols) * size_t(rows));
  EXPECT_EQ(quantize_rows(t, x.data(), q.data(), rows, cols, imp), q.size());
  std::vector<float> y(x.size());
  dequantize_rows(t, q.data(), y.data(), rows, cols);
  return y;
}

// ||x − y|| / ||x||, optionally weighted per column.
double rel_error(const std::vector<float>& x, const std::vector<float>& y, int64_t cols,
                 const float* w = nullptr) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double wi = w ? w[i % size_t(cols)] : 1.0;
    num += wi * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += wi * double(x[i]) * x[i];
  }
  return std::sqrt(num / den);
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST(Quant, BlockSizesMatchGgml) {
  // Block layouts from ggml-common.h: elements per block and bytes per block.
  struct Row {
    DType t;
    int64_t block;
    size_t bytes;
  };
  const Row rows[] = {{DType::Q8_0, 32, 34},   {DType::Q4_0, 32, 18},   {DType::Q4_1, 32, 20},
                      {DType::Q5_0, 32, 22},   {DType::Q5_1, 32, 24},   {DType::Q2_K, 256, 84},
                      {DType::Q3_K, 256, 110}, {DType::Q4_K, 256, 144}, {DType::Q5_K, 256, 176},
                      {DType::Q6_K, 256, 210}};
  for (const Row& r : rows) {
    SCOPED_TRACE(dtype_name(r.t));
    EXPECT_EQ(dtype_info(r.t).block_size, r.block);
    EXPECT_EQ(dtype_info(r.t).type_size, r.bytes);
    EXPECT_EQ(quant_row_bytes(r.t, r.block * 3), r.bytes * 3);
    const GgmlTypeInfo* g = ggml_type_info(ggml_type_of(r.t));
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->block_size, r.block);
    EXPECT_EQ(g->type_size, r.bytes);
    EXPECT_TRUE(quant_supported(r.t));
    EXPECT_EQ(quant_uses_importance(r.t), r.t != DType::Q8_0);
  }
  EXPECT_EQ(quant_row_bytes(DType::F16, 7), 14u);
  EXPECT_FALSE(quant_supported(DType::I32));
}

// Relative RMS error of a round trip on N(0, 1) data, per type. The bounds sit 10% above what the quantizers
// reach on this data (the bytes are ggml's, so these are ggml's errors; for Gaussian data a uniform quantizer
// of step Δ gives Δ/√12, e.g. Q8_0: Δ ≈ 2.2σ/127 → 0.005).
TEST(Quant, RoundTripErrorBounds) {
  const int64_t rows = 64, cols = 512;
  const std::vector<float> x = normal_matrix(1, rows, cols, 1.0f);
  struct Bound {
    DType t;
    double max_rel;
  };
  const Bound bounds[] = {{DType::F32, 0.0},     {DType::BF16, 0.0019}, {DType::F16, 0.00024},
                          {DType::Q8_0, 0.0059}, {DType::Q6_K, 0.0195}, {DType::Q5_K, 0.0395},
                          {DType::Q5_1, 0.0416}, {DType::Q5_0, 0.047},  {DType::Q4_K, 0.0782},
                          {DType::Q4_1, 0.0857}, {DType::Q4_0, 0.0944}, {DType::Q3_K, 0.1644},
                          {DType::Q2_K, 0.3253}};
  for (const Bound& b : bounds) {
    const double e = rel_error(x, round_trip(b.t, x, rows, cols), cols);
    std::printf("%-5s relative RMS error %.5f (bound %.4f)\n", dtype_name(b.t), e, b.max_rel);
    EXPECT_LE(e, b.max_rel) << dtype_name(b.t);
  }
}

TEST(Quant, Q8_0ElementBound) {
  // |x − x'| ≤ d/2 per element, d = max|x|/127 of its block (plus the f16 rounding of d, ≤ 2^-11 relative,
  // times 127).
  const int64_t cols = 256;
  const std::vector<float> x = normal_matrix(2, 4, cols, 3.0f);
  const std::vector<float> y = round_trip(DType::Q8_0, x, 4, cols);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127;
    for (size_t j = 0; j < 32; ++j)
      EXPECT_LE(std::fabs(x[32 * b + j] - y[32 * b + j]), 0.5f * d + amax * 0.0005f + 1e-7f);
  }
}

TEST(Quant, ZeroAndConstantRows) {
  for (DType t : kBlockTypes) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<float> zero(512, 0.0f);
    for (float v : round_trip(t, zero, 2, 256)) EXPECT_EQ(v, 0.0f);
    std::vector<float> c(512, 0.37f);
    for (float v : round_trip(t, c, 2, 256)) EXPECT_NEAR(v, 0.37f, 0.37f * 0.02f);
  }
}

// An importance vector (the imatrix) makes the quantizer trade error on unimportant columns for error on
// important ones: the importance-weighted error must drop for every type that uses it.
TEST(Quant, ImportanceLowersWeightedError) {
  const int64_t rows = 32, cols = 1024;
  const std::vector<float> x = normal_matrix(3, rows, cols, 0.02f);
  std::vector<float> imp(static_cast<size_t>(cols));
  Rng rng(4);
  for (float& w : imp) {
    const float u = rng.uniform();
    w = u < 0.1f ? 50.0f * u * 10.0f : 0.05f * u;  // a tenth of the columns matter 1000× more
  }
  for (DType t : kBlockTypes) {
    if (!quant_uses_importance(t)) continue;
    const double plain = rel_error(x, round_trip(t, x, rows, cols), cols, imp.data());
    const double weighted = rel_error(x, round_trip(t, x, rows, cols, imp.data()), cols, imp.data());
    std::printf("%-5s importance-weighted error: %.5f without, %.5f with importance\n", dtype_name(t), plain,
                weighted);
    EXPECT_LT(weighted, plain * 0.9) << dtype_name(t);
  }
  // Q8_0 ignores the importance, as ggml does.
  std::vector<uint8_t> a(quant_row_bytes(DType::Q8_0, cols)), b(a.size());
  quantize_rows(DType::Q8_0, x.data(), a.data(), 1, cols);
  quantize_rows(DType::Q8_0, x.data(), b.data(), 1, cols, imp.data());
  EXPECT_EQ(a, b);
}

TEST(Quant, RowsAreIndependent) {
  // Quantizing a matrix equals quantizing each row alone (rows run in parallel; importance is shared).
  const int64_t rows = 9, cols = 768;
  const std::vector<float> x = normal_matrix(5, rows, cols, 0.5f);
  std::vector<float> imp(size_t(cols), 1.0f);
  for (int64_t j = 0; j < cols; ++j) imp[size_t(j)] = 1.0f + float(j % 5);
  for (DType t : kBlockTypes) {
    SCOPED_TRACE(dtype_name(t));
    const size_t rb = quant_row_bytes(t, cols);
    std::vector<uint8_t> all(rb * rows), one(rb);
    quantize_rows(t, x.data(), all.data(), rows, cols, imp.data());
    for (int64_t r = 0; r < rows; ++r) {
      quantize_rows(t, x.data() + r * cols, one.data(), 1, cols, imp.data());
      EXPECT_EQ(std::memcmp(one.data(), all.data() + size_t(r) * rb, rb), 0) << "row " << r;
    }
  }
}

TEST(Quant, HalfPrecisionRounding) {
  // f16: nearest even, overflow to inf at 65520, subnormals, NaN -> quiet NaN keeping the sign.
  const float in[] = {1.0f,
                      1.0f + 0x1p-11f,
                      1.0f + 0x1p-11f + 0x1p-23f,
                      65504.0f,
                      65519.99f,
                      65520.0f,
                      0x1p-24f,
                      0x1p-25f,
                      0x1.8p-25f,
                      -0.0f,
                      bits_f32(0xffc00001u),
                      bits_f32(0x7f800001u)};
  const uint16_t want16[] = {0x3c00, 0x3c00, 0x3c01, 0x7bff, 0x7bff, 0x7c00,
                             0x0001, 0x0000, 0x0001, 0x8000, 0xfe00, 0x7e00};
  uint16_t out[12];
  quantize_rows(DType::F16, in, out, 1, 12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(out[i], want16[i]) << "f16 case " << i;
  // bf16 as ggml: nearest even on the top 16 bits, NaN -> (bits >> 16) | 0x40, subnormals kept.
  const float inb[] = {1.0f,
                       bits_f32(0x3f808000u),
                       bits_f32(0x3f818000u),
                       bits_f32(0x7f7fffffu),
                       bits_f32(0x00010000u),
                       bits_f32(0x7f800001u),
                       bits_f32(0xff812345u),
                       -0.0f};
  const uint16_t wantb[] = {0x3f80, 0x3f80, 0x3f82, 0x7f80, 0x0001, 0x7fc0, 0xffc1, 0x8000};
  quantize_rows(DType::BF16, inb, out, 1, 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], wantb[i]) << "bf16 case " << i;
  float back[8];
  dequantize_rows(DType::BF16, out, back, 1, 8);
  EXPECT_EQ(f32_bits(back[0]), 0x3f800000u);
}

TEST(Quant, ArgumentErrors) {
  std::vector<float> x(300, 1.0f);
  std::vector<uint8_t> q(1024);
  EXPECT_THROW(quantize_rows(DType::Q4_K, x.data(), q.data(), 1, 300), UnsupportedError);  // 300 % 256
  EXPECT_THROW(quantize_rows(DType::Q8_0, x.data(), q.data(), 1, 40), UnsupportedError);   // 40 % 32
  EXPECT_THROW(quantize_rows(DType::I32, x.data(), q.data(), 1, 32), UnsupportedError);
  std::vector<float> imp(256, 1.0f);
  imp[7] = std::nanf("");
  EXPECT_THROW(quantize_rows(DType::Q4_K, x.data(), q.data(), 1, 256, imp.data()), ConfigError);
  try {
    quant_row_bytes(DType::Q6_K, 896);
    FAIL();
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("896"), std::string::npos) << e.what();
  }
}

TEST(Quant, TensorForms) {
  Tensor x = Tensor::empty(DType::F32, {3, 64});
  Rng rng(9);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = rng.normal();
  const Tensor q = quantize(x, DType::Q8_0);
  EXPECT_EQ(q.dtype(), DType::Q8_0);
  EXPECT_EQ(q.shape(), x.shape());
  EXPECT_EQ(q.nbytes(), 3u * 2 * 34);
  const Tensor y = dequantize(q);
  EXPECT_EQ(y.dtype(), DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(y.f32()[i], x.f32()[i], 0.05f);
}

// Byte identity with ggml: the committed vectors were made by ggml_quantize_chunk from the same inputs.
TEST(Quant, ByteIdenticalToGgml) {
  std::ifstream f(std::string(TUNE_TEST_DATA_DIR) + "/quant/ggml_vectors.txt");
  ASSERT_TRUE(f) << "tests/data/quant/ggml_vectors.txt is missing";
  std::string line;
  int cases = 0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string type_name, hex;
    int64_t rows, cols;
    uint64_t seed;
    int with_imp;
    ASSERT_TRUE(is >> type_name >> rows >> cols >> seed >> with_imp >> hex) << line.substr(0, 60);
    DType t;
    ASSERT_TRUE(dtype_from_name(type_name, &t)) << type_name;
    SCOPED_TRACE(type_name + (with_imp ? " with importance" : " without importance"));
    Rng rng(seed);
    std::vector<float> x(static_cast<size_t>(rows * cols)), imp(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r)
      make_row(rng, int((seed + 3 * uint64_t(r)) % 10), x.data() + r * cols, cols);
    make_importance(rng, imp.data(), cols);
    std::vector<uint8_t> want(hex.size() / 2);
    for (size_t i = 0; i < want.size(); ++i) want[i] = uint8_t(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    std::vector<uint8_t> got(quant_row_bytes(t, cols) * size_t(rows));
    ASSERT_EQ(got.size(), want.size());
    quantize_rows(t, x.data(), got.data(), rows, cols, with_imp ? imp.data() : nullptr);
    size_t diff = 0, first = got.size();
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] != want[i]) {
        ++diff;
        first = std::min(first, i);
      }
    }
    EXPECT_EQ(diff, 0u) << diff << " of " << got.size() << " bytes differ from ggml, first at byte " << first;
    ++cases;
  }
  EXPECT_EQ(cases, 21);
}

}  // namespace tune
