// cuBLASLt GEMMs (ops/gemm.h) against a double reference: every transpose combination, padded row strides,
// accumulation in place and from a separate C, bias, bf16 and f32 outputs, odd sizes. bf16 inputs are exact in
// the reference. The error bound is relative to the magnitude of the summed terms, |alpha| sum|a b| + |c| +
// |bias|: fp32 accumulation leaves ~1e-6 of it, a bf16 output (where the product may be rounded before C and the
// bias are added, as a bf16 framework would) about one bf16 ulp of it (kBf16Rtol).
#include "cuda_test_util.h"
#include "ops/gemm.h"

namespace tune {

#ifdef TUNE_CUDA
namespace {

// Element (i, j) of a row-major operand stored as (rows, ld) — transposed when `trans`.
double at(const std::vector<double>& m, int64_t ld, bool trans, int64_t i, int64_t j) {
  return trans ? m[size_t(j * ld + i)] : m[size_t(i * ld + j)];
}

}  // namespace

TEST(GemmCuda, MatchesReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t M, N, K;
  };
  for (Case c : {Case{37, 29, 130}, Case{256, 128, 64}, Case{1, 300, 17}, Case{513, 8, 1024}}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        for (DType ab : {DType::BF16, DType::F32}) {
          for (DType dd : {DType::BF16, DType::F32}) {
            if (ab == DType::F32 && dd == DType::BF16) continue;  // not a combination the training path uses
            for (int mode = 0; mode < 3; ++mode) {  // 0: D = AB, 1: D += AB (C = D), 2: D = C + AB + bias
              SCOPED_TRACE(testing::Message() << c.M << "x" << c.N << "x" << c.K << " ta " << ta << " tb " << tb
                                              << " " << dtype_name(ab) << "->" << dtype_name(dd) << " mode " << mode);
              const int64_t ar = ta ? c.K : c.M, ac = ta ? c.M : c.K, br = tb ? c.N : c.K, bc = tb ? c.K : c.N;
              const int64_t lda = ac + 8, ldb = bc + 16, ldd = c.N + 24;
              const Tensor A = test::rounded(test::randn({ar, lda}, 1), ab), B = test::rounded(test::randn({br, ldb}, 2), ab);
              const Tensor C = test::rounded(test::randn({c.M, ldd}, 3), dd), bias = test::rounded(test::randn({c.N}, 4), dd);
              const std::vector<double> a = test::doubles(A), b = test::doubles(B), cc = test::doubles(C),
                                        bs = test::doubles(bias);
              const float alpha = 0.75f;
              std::vector<double> ref = cc, mag(cc.size());
              for (int64_t i = 0; i < c.M; ++i)
                for (int64_t j = 0; j < c.N; ++j) {
                  double s = 0, m = 0;
                  for (int64_t k = 0; k < c.K; ++k) {
                    s += at(a, lda, ta, i, k) * at(b, ldb, tb, k, j);
                    m += std::fabs(at(a, lda, ta, i, k) * at(b, ldb, tb, k, j));
                  }
                  double v = alpha * s;
                  m *= alpha;
                  if (mode >= 1) v += cc[size_t(i * ldd + j)], m += std::fabs(cc[size_t(i * ldd + j)]);
                  if (mode == 2) v += bs[size_t(j)], m += std::fabs(bs[size_t(j)]);
                  ref[size_t(i * ldd + j)] = v;
                  mag[size_t(i * ldd + j)] = m;
                }
              const Tensor Ad = test::on_cuda(A, ab), Bd = test::on_cuda(B, ab), Cd = test::on_cuda(C, dd),
                           biasd = test::on_cuda(bias, dd);
              // mode 1 accumulates into D (= C); mode 2 reads C from its own buffer into a NaN-filled D.
              Tensor D = mode == 2 ? test::poisoned({c.M, ldd}, dd) : test::on_cuda(C, dd);
              const void* Cp = mode == 0 ? nullptr : mode == 1 ? D.data() : Cd.data();
              cuda::gemm(c.M, c.N, c.K, alpha, {Ad.data(), lda, bool(ta)}, {Bd.data(), ldb, bool(tb)}, ab,
                         mode == 0 ? 0.0f : 1.0f, Cp, D.data(), ldd, dd, mode == 2 ? biasd.data() : nullptr);
              // Compare the M x N block only.
              const std::vector<double> got = test::doubles(D);
              int64_t bad = 0;
              double worst_g = 0, worst_r = 0, worst_e = -1;
              const double rtol = dd == DType::BF16 ? test::kBf16Rtol : 1e-5;
              for (int64_t i = 0; i < c.M; ++i)
                for (int64_t j = 0; j < c.N; ++j) {
                  const double g = got[size_t(i * ldd + j)], r = ref[size_t(i * ldd + j)];
                  const double e = std::fabs(g - r) / (rtol * mag[size_t(i * ldd + j)] + 1e-30);
                  if (!(e <= 1.0)) ++bad;
                  if (!(e <= worst_e)) worst_e = e, worst_g = g, worst_r = r;
                }
              EXPECT_EQ(bad, 0) << "worst: got " << worst_g << " want " << worst_r;
            }
          }
        }
      }
    }
  }
}

// Grouped products (MoE experts): groups of different sizes, empty ones included, each with its own B, both
// layouts of B, a scale, overwrite and accumulate. bf16 throughout: one bf16 ulp of the summed magnitudes.
TEST(GemmCuda, GroupedMatchesReference) {
  TUNE_REQUIRE_CUDA();
  const std::vector<int64_t> M{5, 0, 33, 1, 0, 70};
  const int64_t G = int64_t(M.size()), N = 48, K = 40, lda = K + 8, ldd = N + 8;
  int64_t rows = 0;
  for (int64_t m : M) rows += m;
  for (int tb = 0; tb < 2; ++tb)
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(testing::Message() << "trans_b " << tb << " beta " << beta);
      const int64_t b_stride = N * K + 16;  // (N, K) or (K, N) per group, padded apart
      const Tensor A = test::rounded(test::randn({rows, lda}, 1), DType::BF16);
      const Tensor B = test::rounded(test::randn({G, b_stride}, 2), DType::BF16);
      const Tensor C = test::rounded(test::randn({rows, ldd}, 3), DType::BF16);
      const std::vector<double> a = test::doubles(A), b = test::doubles(B), cc = test::doubles(C);
      const Tensor Ad = test::on_cuda(A, DType::BF16), Bd = test::on_cuda(B, DType::BF16);
      Tensor D = beta != 0.0f ? test::on_cuda(C, DType::BF16) : test::poisoned({rows, ldd}, DType::BF16);
      const float alpha = 0.5f;
      cuda::gemm_grouped(G, M.data(), N, K, Ad.data(), lda, Bd.data(), b_stride, bool(tb), alpha, beta, D.data(),
                         ldd);
      const std::vector<double> got = test::doubles(D);
      int64_t bad = 0, row = 0;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t i = row; i < row + M[size_t(g)]; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double s = beta * cc[size_t(i * ldd + j)], mag = std::fabs(s);
            for (int64_t k = 0; k < K; ++k) {
              const double bv = tb ? b[size_t(g * b_stride + j * K + k)] : b[size_t(g * b_stride + k * N + j)];
              s += alpha * a[size_t(i * lda + k)] * bv;
              mag += std::fabs(alpha * a[size_t(i * lda + k)] * bv);
            }
            if (!(std::fabs(got[size_t(i * ldd + j)] - s) <= test::kBf16Rtol * mag + 1e-30)) ++bad;
          }
        row += M[size_t(g)];
      }
      EXPECT_EQ(bad, 0);
    }
}

// Per-group weight gradients: D_g += alpha A_g^T B_g over each group's rows, f32 accumulation into D.
TEST(GemmCuda, GroupedWeightGradientsMatchReference) {
  TUNE_REQUIRE_CUDA();
  const std::vector<int64_t> M{5, 0, 33, 1, 70};
  const int64_t G = int64_t(M.size()), N1 = 24, N2 = 40, lda = N1 + 8, ldb = N2 + 8, d_stride = N1 * N2 + 4;
  int64_t rows = 0;
  for (int64_t m : M) rows += m;
  const Tensor A = test::rounded(test::randn({rows, lda}, 1), DType::BF16);
  const Tensor B = test::rounded(test::randn({rows, ldb}, 2), DType::BF16);
  const Tensor D0 = test::randn({G, d_stride}, 3);
  const std::vector<double> a = test::doubles(A), b = test::doubles(B);
  std::vector<double> ref = test::doubles(D0);
  const float alpha = 0.25f;
  int64_t row = 0;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t i = 0; i < N1; ++i)
      for (int64_t j = 0; j < N2; ++j) {
        double s = 0;
        for (int64_t r = row; r < row + M[size_t(g)]; ++r) s += a[size_t(r * lda + i)] * b[size_t(r * ldb + j)];
        ref[size_t(g * d_stride + i * N2 + j)] += alpha * s;
      }
    row += M[size_t(g)];
  }
  const Tensor Ad = test::on_cuda(A, DType::BF16), Bd = test::on_cuda(B, DType::BF16);
  Tensor D = test::on_cuda(D0, DType::F32);
  cuda::gemm_grouped_wgrad(G, M.data(), N1, N2, Ad.data(), lda, Bd.data(), ldb, alpha,
                           static_cast<float*>(D.data()), d_stride);
  test::expect_all_close("D", D, ref, 1e-4, 1e-5);
}

// Token counts that change from call to call, as packed batches' do: 1000, 1001, 1023 and 1024 rows share one timed
// choice (an overwriting and an accumulating product: two timings in all), 1100 rows (the next power of two up)
// time their own; every call matches the double reference.
TEST(GemmCuda, NearbyShapesShareTheTimedChoice) {
  TUNE_REQUIRE_CUDA();
  const int64_t N = 384, K = 320, Mmax = 1100;
  const Tensor A = test::rounded(test::randn({Mmax, K}, 5), DType::BF16);
  const Tensor B = test::rounded(test::randn({N, K}, 6), DType::BF16);
  const Tensor C = test::rounded(test::randn({Mmax, N}, 7), DType::BF16);
  const std::vector<double> a = test::doubles(A), b = test::doubles(B), cc = test::doubles(C);
  const Tensor Ad = test::on_cuda(A, DType::BF16), Bd = test::on_cuda(B, DType::BF16);
  auto run = [&](int64_t M, bool accumulate) {
    SCOPED_TRACE(testing::Message() << "M " << M << (accumulate ? " accumulating" : ""));
    Tensor D = accumulate ? test::on_cuda(C, DType::BF16) : test::poisoned({Mmax, N}, DType::BF16);
    cuda::gemm(M, N, K, 1.0f, {Ad.data(), K, false}, {Bd.data(), K, true}, DType::BF16, accumulate ? 1.0f : 0.0f,
               accumulate ? D.data() : nullptr, D.data(), N, DType::BF16);
    const std::vector<double> got = test::doubles(D);
    int64_t bad = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double v = accumulate ? cc[size_t(i * N + j)] : 0.0, mag = std::fabs(v);
        for (int64_t k = 0; k < K; ++k) {
          v += a[size_t(i * K + k)] * b[size_t(j * K + k)];
          mag += std::fabs(a[size_t(i * K + k)] * b[size_t(j * K + k)]);
        }
        if (!(std::fabs(got[size_t(i * N + j)] - v) <= test::kBf16Rtol * mag)) ++bad;
      }
    EXPECT_EQ(bad, 0);
  };
  const int64_t t0 = cuda::gemm_timings();
  for (int64_t M : {1000, 1001, 1023, 1024}) run(M, false), run(M, true);
  EXPECT_EQ(cuda::gemm_timings() - t0, 2);
  run(1100, false);
  EXPECT_EQ(cuda::gemm_timings() - t0, 3);
}

#else

TEST(GemmCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
