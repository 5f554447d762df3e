// rope_fwd: matches the rotate_half formula, is the identity at position 0, keeps pair norms, and leaves the dims
// past rotary_dim untouched (partial RoPE).
#include "ops/rope.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(Rope, MatchesFormulaAndPartialDims) {
  const int64_t T = 6, Hh = 3, d = 12;
  for (int64_t rd : {int64_t(12), int64_t(4)}) {
    Tensor x = test::randn({T, Hh, d}, 6), pos = Tensor::empty(DType::I32, {T});
    for (int64_t t = 0; t < T; ++t) pos.ptr<int32_t>()[t] = int32_t(t * 3);
    Tensor y = x.clone();
    rope_fwd(y, pos, rd, 10000.0);
    std::vector<double> ref(size_t(T * Hh * d));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hh; ++h) {
        const float* v = x.f32() + (t * Hh + h) * d;
        double* r = ref.data() + (t * Hh + h) * d;
        for (int64_t i = 0; i < d; ++i) r[i] = v[i];
        for (int64_t i = 0; i < rd / 2; ++i) {
          const double a = double(pos.ptr<int32_t>()[t]) * std::pow(10000.0, -2.0 * double(i) / double(rd));
          r[i] = v[i] * std::cos(a) - v[i + rd / 2] * std::sin(a);
          r[i + rd / 2] = v[i + rd / 2] * std::cos(a) + v[i] * std::sin(a);
        }
      }
    // Angles are formed in fp32 as transformers does: |pos| <= 15 gives angle errors ~ 1e-6.
    test::expect_close(y.f32(), ref, 1e-5, 1e-5);
    for (int64_t i = 0; i < Hh * d; ++i) EXPECT_EQ(y.f32()[i], x.f32()[i]) << "position 0 must be unrotated";
  }
}

}  // namespace tune

namespace tune {

TEST(Rope, GradCheck) {
  const int64_t T = 4, Hh = 2, d = 8;
  const int32_t pos[T] = {0, 3, 7, 2};
  for (int64_t rd : {int64_t(8), int64_t(4)}) {
    auto x = test::randv(T * Hh * d, 9), g = test::randv(T * Hh * d, 10);
    auto loss = [&] {
      std::vector<double> y = x;
      cpu::rope(y.data(), pos, T, Hh, d, rd, 1000.0, +1);
      return test::weighted_sum(y, g);
    };
    std::vector<double> dx = g;
    cpu::rope(dx.data(), pos, T, Hh, d, rd, 1000.0, -1);
    test::expect_grad("dx", x, dx, loss);
  }
}

}  // namespace tune
