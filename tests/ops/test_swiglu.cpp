// swiglu_fwd against silu(g) * u in double.
#include "ops/swiglu.h"
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
