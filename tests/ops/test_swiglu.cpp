// swiglu_fwd against silu(g) * u in double.
#include "ops/swiglu.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(SwiGlu, MatchesFormula) {
  Tensor g = test::randn({5, 7}, 13, 3.0f), u = test::randn({5, 7}, 14);
  Tensor h = Tensor::empty(DType::F32, {5, 7});
  swiglu_fwd(g, u, h);
  std::vector<double> ref;
  for (int64_t i = 0; i < 35; ++i) ref.push_back(g.f32()[i] / (1.0 + std::exp(-double(g.f32()[i]))) * u.f32()[i]);
  test::expect_close(h.f32(), ref, 1e-6, 1e-6);
}

}  // namespace tune

namespace tune {

TEST(SwiGlu, GradCheck) {
  const int64_t n = 11;
  auto gt = test::randv(n, 15, 3.0), u = test::randv(n, 16), w = test::randv(n, 17);
  auto loss = [&] {
    std::vector<double> h(n);
    cpu::swiglu_fwd(gt.data(), u.data(), h.data(), n);
    return test::weighted_sum(h, w);
  };
  std::vector<double> dg(n), du(n);
  cpu::swiglu_bwd(gt.data(), u.data(), w.data(), dg.data(), du.data(), n);
  test::expect_grad("dg", gt, dg, loss);
  test::expect_grad("du", u, du, loss);
}

}  // namespace tune
