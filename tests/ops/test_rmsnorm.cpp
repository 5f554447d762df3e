// rmsnorm_fwd against the formula in double, for plain and zero-centred weights, in place and out of place.
#include "ops/rmsnorm.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(RmsNorm, MatchesDoubleReference) {
  const int64_t R = 5, C = 7;
  for (bool zc : {false, true}) {
    for (float scale : {1e-3f, 1.0f, 50.0f}) {
      Tensor x = test::randn({R, C}, 4, scale), w = test::randn({C}, 5, 0.3f, 1.0f);
      Tensor y = Tensor::empty(DType::F32, {R, C});
      rmsnorm_fwd(x, w, 1e-6f, zc, y);
      std::vector<double> ref(size_t(R * C));
      for (int64_t r = 0; r < R; ++r) {
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += double(x.f32()[r * C + c]) * x.f32()[r * C + c];
        const double inv = 1.0 / std::sqrt(ss / C + 1e-6);
        for (int64_t c = 0; c < C; ++c)
          ref[size_t(r * C + c)] = x.f32()[r * C + c] * inv * (zc ? 1.0 + w.f32()[c] : double(w.f32()[c]));
      }
      test::expect_close(y.f32(), ref, 1e-6, 1e-5);
      rmsnorm_fwd(x, w, 1e-6f, zc, x);  // aliasing y = x is allowed
      test::expect_close(x.f32(), ref, 1e-6, 1e-5);
    }
  }
}

}  // namespace tune

namespace tune {

TEST(RmsNorm, GradCheck) {
  const int64_t R = 5, C = 7;
  for (bool zc : {false, true}) {
    for (double scale : {0.01, 1.0, 30.0}) {
      auto x = test::randv(R * C, 6, scale), w = test::randv(C, 7, 0.3, zc ? 0.0 : 1.0), g = test::randv(R * C, 8);
      auto loss = [&] {
        std::vector<double> y(R * C);
        cpu::rmsnorm_fwd(x.data(), w.data(), 1e-6, zc, y.data(), R, C);
        return test::weighted_sum(y, g);
      };
      std::vector<double> dx(R * C), dw(C, 0.0);
      cpu::rmsnorm_bwd(x.data(), w.data(), g.data(), 1e-6, zc, dx.data(), dw.data(), R, C);
      test::expect_grad("dx", x, dx, loss);
      test::expect_grad("dw", w, dw, loss);
    }
  }
}

}  // namespace tune
