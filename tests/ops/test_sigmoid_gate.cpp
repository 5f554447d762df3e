// sigmoid_gate on the CPU: the forward against x * sigmoid(g) in double with strided rows (and in place), the
// backward by central differences and with dx aliasing dy.
#include <cmath>

#include "grad_check.h"
#include "ops/sigmoid_gate.h"

namespace tune {

TEST(SigmoidGate, MatchesFormula) {
  const int64_t T = 4, N = 7, ldx = 9, ldg = 11, ldy = 8;
  const auto x = test::randv(size_t(T * ldx), 1), g = test::randv(size_t(T * ldg), 2, 4.0);
  std::vector<double> y(size_t(T * ldy), 7.0);
  cpu::sigmoid_gate_fwd(x.data(), ldx, g.data(), ldg, y.data(), ldy, T, N);
  std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end()), yf(y.size());
  cpu::sigmoid_gate_fwd(xf.data(), ldx, gf.data(), ldg, yf.data(), ldy, T, N);
  auto xi = x;  // y aliasing x
  cpu::sigmoid_gate_fwd(xi.data(), ldx, g.data(), ldg, xi.data(), ldx, T, N);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < N; ++i) {
      const double want = x[size_t(t * ldx + i)] / (1.0 + std::exp(-g[size_t(t * ldg + i)]));
      EXPECT_NEAR(y[size_t(t * ldy + i)], want, 1e-15);
      EXPECT_NEAR(yf[size_t(t * ldy + i)], want, 1e-6 * std::fabs(want) + 1e-9);
      EXPECT_NEAR(xi[size_t(t * ldx + i)], want, 1e-15);
    }
    EXPECT_EQ(y[size_t(t * ldy + N)], 7.0);  // past N: untouched
  }
}

TEST(SigmoidGate, GradCheck) {
  for (double scale : {0.1, 1.0, 8.0}) {
    SCOPED_TRACE(testing::Message() << "scale " << scale);
    const int64_t T = 3, N = 5, ldx = 6, ldg = 7, ldy = 5, lddx = 8, lddg = 9;
    auto x = test::randv(size_t(T * ldx), 3), g = test::randv(size_t(T * ldg), 4, scale);
    const auto gy = test::randv(size_t(T * ldy), 5);
    auto loss = [&] {
      std::vector<double> y(gy.size(), 0.0);
      cpu::sigmoid_gate_fwd(x.data(), ldx, g.data(), ldg, y.data(), ldy, T, N);
      return test::weighted_sum(y, gy);
    };
    std::vector<double> dx(size_t(T * lddx), 0.0), dg(size_t(T * lddg), 0.0);
    cpu::sigmoid_gate_bwd(x.data(), ldx, g.data(), ldg, gy.data(), ldy, dx.data(), lddx, dg.data(), lddg, T,
                          N);
    // The analytic gradients in x's and g's layouts (zero in their pad columns).
    std::vector<double> ax(x.size(), 0.0), ag(g.size(), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < N; ++i) {
        ax[size_t(t * ldx + i)] = dx[size_t(t * lddx + i)];
        ag[size_t(t * ldg + i)] = dg[size_t(t * lddg + i)];
      }
    test::expect_grad("dx", x, ax, loss);
    test::expect_grad("dg", g, ag, loss);
    auto dyi = gy;  // dx aliasing dy
    cpu::sigmoid_gate_bwd(x.data(), ldx, g.data(), ldg, dyi.data(), ldy, dyi.data(), ldy, dg.data(), lddg, T,
                          N);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < N; ++i) EXPECT_EQ(dyi[size_t(t * ldy + i)], dx[size_t(t * lddx + i)]);
  }
}

}  // namespace tune
