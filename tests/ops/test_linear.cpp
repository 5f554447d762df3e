// linear_fwd against a double-precision loop, odd shapes, with and without bias.
#include "ops/linear.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(Linear, MatchesDoubleReference) {
  for (auto [T, K, N] : {std::tuple<int64_t, int64_t, int64_t>{5, 7, 3}, {1, 33, 17}, {9, 64, 40}}) {
    for (bool bias : {false, true}) {
      Tensor x = test::randn({T, K}, 1), w = test::randn({N, K}, 2), b = test::randn({N}, 3);
      Tensor y = Tensor::empty(DType::F32, {T, N});
      linear_fwd(x, w, bias ? &b.view() : nullptr, y);
      std::vector<double> ref(size_t(T * N));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
          double s = bias ? b.f32()[n] : 0.0;
          for (int64_t k = 0; k < K; ++k) s += double(x.f32()[t * K + k]) * w.f32()[n * K + k];
          ref[size_t(t * N + n)] = s;
        }
      // fp32 accumulation over K terms of unit size: error ~ sqrt(K) * 6e-8.
      test::expect_close(y.f32(), ref, 1e-5, 1e-5);
    }
  }
}

TEST(Linear, ShapeMismatchIsAnError) {
  Tensor x = test::randn({2, 3}, 1), w = test::randn({4, 5}, 2), y = Tensor::empty(DType::F32, {2, 4});
  EXPECT_THROW(linear_fwd(x, w, nullptr, y), InternalError);
}

}  // namespace tune

namespace tune {

TEST(Linear, GradCheck) {
  const int64_t T = 5, K = 7, N = 3;
  auto x = test::randv(T * K, 1), w = test::randv(N * K, 2), b = test::randv(N, 3), g = test::randv(T * N, 4);
  auto loss = [&] {
    std::vector<double> y(T * N);
    cpu::linear_fwd(x.data(), w.data(), b.data(), y.data(), T, K, N);
    return test::weighted_sum(y, g);
  };
  std::vector<double> dx(T * K, 5.0), dw(N * K, 0.0), db(N, 0.0);
  cpu::linear_bwd(x.data(), w.data(), g.data(), dx.data(), false, dw.data(), db.data(), T, K, N);
  test::expect_grad("dx", x, dx, loss);
  test::expect_grad("dw", w, dw, loss);
  test::expect_grad("db", b, db, loss);
  // accumulate_dx adds to what is there; parameter gradients always accumulate.
  std::vector<double> dx2 = dx, dw2 = dw;
  cpu::linear_bwd<double>(x.data(), w.data(), g.data(), dx2.data(), true, dw2.data(), nullptr, T, K, N);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], 2 * dx[i], 1e-12);
  for (size_t i = 0; i < dw.size(); ++i) EXPECT_NEAR(dw2[i], 2 * dw[i], 1e-12);
}

}  // namespace tune
