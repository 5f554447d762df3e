// cross_entropy: values against log-softmax, gradient check, ignored rows, and bad labels.
#include "ops/cross_entropy.h"

#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(CrossEntropy, ValuesAndGradCheck) {
  const int64_t N = 5, V = 9;
  const int32_t targets[N] = {3, kIgnoreIndex, 0, 8, 3};
  auto l = test::randv(N * V, 20, 3.0);
  std::vector<double> loss(N);
  cpu::cross_entropy_fwd(l.data(), targets, loss.data(), N, V);
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] == kIgnoreIndex) {
      EXPECT_EQ(loss[size_t(i)], 0.0);
      continue;
    }
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(l[size_t(i * V + v)]);
    EXPECT_NEAR(loss[size_t(i)], std::log(z) - l[size_t(i * V + targets[i])], 1e-12);
  }
  const double scale = 0.25;
  auto total = [&] {
    std::vector<double> r(N);
    cpu::cross_entropy_fwd(l.data(), targets, r.data(), N, V);
    double s = 0;
    for (double x : r) s += scale * x;
    return s;
  };
  std::vector<double> dl(N * V);
  cpu::cross_entropy_bwd(l.data(), targets, scale, dl.data(), N, V);
  test::expect_grad("dlogits", l, dl, total);
}

TEST(CrossEntropy, LabelOutsideVocabulary) {
  Tensor logits = test::randn({2, 4}, 21), targets = Tensor::empty(DType::I32, {2}), loss = Tensor::empty(DType::F32, {2});
  targets.ptr<int32_t>()[0] = 1;
  targets.ptr<int32_t>()[1] = 4;
  EXPECT_THROW(cross_entropy_fwd(logits, targets, loss), ConfigError);
}

}  // namespace tune
