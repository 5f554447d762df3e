// linear_fwd against a double-precision loop, odd shapes, with and without bias.
#include "ops/linear.h"
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
