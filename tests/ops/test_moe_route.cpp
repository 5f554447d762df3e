// moe_route_fwd: top-k of the fp32 softmax, highest first, optionally renormalized.
#include <algorithm>
#include <numeric>

#include "ops/moe_route.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

TEST(MoeRoute, TopKOfSoftmax) {
  const int64_t T = 6, E = 7;
  for (int64_t k : {int64_t(1), int64_t(2), int64_t(3)}) {
    for (bool renorm : {false, true}) {
      Tensor logits = test::randn({T, E}, 16, 2.0f);
      Tensor ex = Tensor::empty(DType::I32, {T, k}), w = Tensor::empty(DType::F32, {T, k});
      moe_route_fwd(logits, renorm, ex, w);
      for (int64_t t = 0; t < T; ++t) {
        const float* l = logits.f32() + t * E;
        std::vector<double> p(static_cast<size_t>(E));
        double mx = *std::max_element(l, l + E), sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(double(l[e]) - mx));
        std::vector<int> order(static_cast<size_t>(E));
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
        double kept = 0;
        for (int64_t j = 0; j < k; ++j) kept += p[size_t(order[size_t(j)])] / sum;
        for (int64_t j = 0; j < k; ++j) {
          EXPECT_EQ(ex.ptr<int32_t>()[t * k + j], order[size_t(j)]);
          const double want = p[size_t(order[size_t(j)])] / sum / (renorm ? kept : 1.0);
          EXPECT_NEAR(w.f32()[t * k + j], want, 1e-6);
        }
      }
    }
  }
}

}  // namespace tune

namespace tune {

TEST(MoeRoute, GradCheck) {
  const int64_t T = 5, E = 6;
  for (int64_t k : {int64_t(1), int64_t(2), int64_t(4)}) {
    for (bool renorm : {false, true}) {
      auto l = test::randv(T * E, 18, 2.0), g = test::randv(T * k, 19);
      std::vector<int32_t> ex(T * k);
      auto loss = [&] {
        std::vector<double> w(T * k);
        cpu::moe_route_fwd(l.data(), renorm, ex.data(), w.data(), T, E, k);
        return test::weighted_sum(w, g);
      };
      loss();  // fixes the selection the backward differentiates
      std::vector<double> dl(T * E);
      cpu::moe_route_bwd(l.data(), renorm, ex.data(), g.data(), dl.data(), T, E, k);
      test::expect_grad("dlogits", l, dl, loss);
    }
  }
}

}  // namespace tune
