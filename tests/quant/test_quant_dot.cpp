// ggml-faithful dot products (quant/dot.h) and the quantized linear path. (1) For every weight type vec_dot equals
// dequantize(w) · dequantize_act(quantize_act(x)) computed in double, within float rounding of the sum (tight: both
// sides see the very same quantized values). (2) The activation quantizers land on the grid they promise (|error|
// ≤ half a step). (3) linear_fwd with quantized weights against the f32 path over the dequantized weights: the only
// difference is the activation quantization, so the bound is loose and relative to |x|·|w| (documented below).
#include "quant/dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "ops/linear.h"
#include "quant/dot_fast.h"
#include "quant/quant.h"

namespace tune {

namespace {

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K,
                        DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16,  DType::BF16};

std::vector<float> random_row(Rng& rng, int64_t n, float scale, float offset = 0) {
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = offset + scale * (2 * rng.uniform() - 1);
  return x;
}

TEST(QuantDot, MatchesDequantizedProductInDouble) {
  Rng rng(7);
  const int64_t K = 1024;
  for (DType t : kTypes) {
    for (int rep = 0; rep < 6; ++rep) {
      // Rows with an offset exercise the min/offset terms (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K); rep 5 has a zero block.
      const auto w = random_row(rng, K, 0.5f, rep % 2 ? 0.3f : 0.0f);
      auto x = random_row(rng, K, 2.0f, rep % 3 == 1 ? -0.7f : 0.0f);
      if (rep == 5)
        for (int i = 0; i < 256; ++i) x[size_t(i)] = 0;
      std::vector<uint8_t> wq(quant_row_bytes(t, K)), xa(vec_dot_act_row_bytes(t, K));
      quantize_rows(t, w.data(), wq.data(), 1, K);
      vec_dot_quantize_act(t, x.data(), xa.data(), K);
      std::vector<float> wd(static_cast<size_t>(K)), xd(static_cast<size_t>(K));
      dequantize_rows(t, wq.data(), wd.data(), 1, K);
      vec_dot_dequantize_act(t, xa.data(), xd.data(), K);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < K; ++i) {
        ref += double(wd[size_t(i)]) * double(xd[size_t(i)]);
        mag += std::fabs(double(wd[size_t(i)]) * double(xd[size_t(i)]));
      }
      const float got = vec_dot(t, wq.data(), xa.data(), K);
      // ggml folds block scales in float (and the Q4_1/Q5_1 offset term through the f16 sum s = d·Σq), so a few
      // float roundings per block: 1e-5 of Σ|w x| covers them, far below the quantization error (~1e-2).
      const double tol = (t == DType::Q4_1 || t == DType::Q5_1 ? 2e-4 : 1e-5) * mag + 1e-6;
      EXPECT_NEAR(got, ref, tol) << dtype_name(t) << " rep " << rep;
    }
  }
}

TEST(QuantDot, ActivationQuantizersStayOnTheirGrid) {
  Rng rng(11);
  const int64_t K = 512;
  for (DType t : kTypes) {
    const auto x = random_row(rng, K, 3.0f);
    std::vector<uint8_t> xa(vec_dot_act_row_bytes(t, K));
    vec_dot_quantize_act(t, x.data(), xa.data(), K);
    std::vector<float> xd(static_cast<size_t>(K));
    vec_dot_dequantize_act(t, xa.data(), xd.data(), K);
    const int64_t blk = (t == DType::F16 || t == DType::BF16) ? 1 : (dtype_info(t).block_size == 256 ? 256 : 32);
    for (int64_t b = 0; b < K / blk; ++b) {
      float amax = 0;
      for (int64_t i = b * blk; i < (b + 1) * blk; ++i) amax = std::fmax(amax, std::fabs(x[size_t(i)]));
      // Step amax/127 (its f16 rounding adds ~1e-3 relative); f16/bf16 round to 2^-11 / 2^-8 relative.
      const double tol = blk == 1 ? (t == DType::F16 ? 1e-3 : 4e-3) * amax : 0.5 * amax / 127 * 1.01 + amax * 2e-3;
      for (int64_t i = b * blk; i < (b + 1) * blk; ++i)
        ASSERT_NEAR(xd[size_t(i)], x[size_t(i)], tol) << dtype_name(t) << " element " << i;
    }
  }
}

TEST(QuantDot, LinearQuantizedAgainstF32Path) {
  Rng rng(3);
  const int64_t T = 5, K = 512, N = 37;
  const auto x = random_row(rng, T * K, 1.0f);
  const auto w = random_row(rng, N * K, 0.1f);
  const auto b = random_row(rng, N, 0.5f);
  for (DType t : kTypes) {
    Tensor wf = Tensor::empty(DType::F32, {N, K});
    std::copy(w.begin(), w.end(), wf.f32());
    const Tensor wq = quantize(wf, t);
    const Tensor wd = dequantize(wq);
    Tensor xt = Tensor::empty(DType::F32, {T, K}), bt = Tensor::empty(DType::F32, {N});
    std::copy(x.begin(), x.end(), xt.f32());
    std::copy(b.begin(), b.end(), bt.f32());
    Tensor yq = Tensor::empty(DType::F32, {T, N}), yf = Tensor::empty(DType::F32, {T, N});
    linear_fwd(xt, wq, &bt.view(), yq);
    linear_fwd(xt, wd, &bt.view(), yf);
    // Activation quantization: 8-bit levels have a relative step of 1/127 of each block's max, i.e. a per-element
    // error ≤ |x|max/254; summed over K with random signs against |w| ≤ 0.1 that is ~ sqrt(K)·0.1/254·0.6 ≈ 5e-3
    // typical. Bound: 0.02 absolute (results are ~1); f16/bf16 activations are much closer.
    double md = 0;
    for (int64_t i = 0; i < T * N; ++i) md = std::fmax(md, std::fabs(double(yq.f32()[i]) - double(yf.f32()[i])));
    EXPECT_LT(md, 0.02) << dtype_name(t);
    EXPECT_GT(md, 0.0) << dtype_name(t) << ": the activations should have been quantized";
    // Each output equals the single dot product of its row (no other arithmetic on the way): quant/dot.h's, or
    // the fast path's where linear_fwd takes it (quant/dot_fast.h: here Q3_K, whose order does not depend on N).
    std::vector<uint8_t> xa(vec_dot_act_row_bytes(t, K));
    vec_dot_quantize_act(t, x.data() + 2 * K, xa.data(), K);
    const auto* wrow = static_cast<const uint8_t*>(wq.data()) + 3 * quant_row_bytes(t, K);
    float ref = vec_dot(t, wrow, xa.data(), K);
    DotOrder order;
    if (vec_dot_fast_plan(t, N, K, false, &order)) {
      std::vector<uint8_t> fa(vec_dot_fast_act_bytes(t, K));
      vec_dot_fast_prepare(t, x.data() + 2 * K, fa.data(), K);
      vec_dot_fast(t, order, wrow, quant_row_bytes(t, K), 1, fa.data(), fa.size(), 1, K, &ref, 1);
    }
    EXPECT_EQ(yq.f32()[2 * N + 3], ref + b[3]) << dtype_name(t);
  }
}

TEST(QuantDot, UnsupportedTypes) {
  EXPECT_FALSE(vec_dot_supported(DType::F32));
  EXPECT_TRUE(vec_dot_supported(DType::Q4_K));
  EXPECT_THROW(vec_dot_act_row_bytes(DType::I32, 32), UnsupportedError);
  EXPECT_THROW(vec_dot_act_row_bytes(DType::Q4_K, 128), UnsupportedError);
}

}  // namespace

}  // namespace tune
