// rmsnorm_fwd against the formula in double, for plain and zero-centred weights, in place and out of place.
#include "ops/rmsnorm.h"
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
