// gdn_gates on the CPU: the forward against the formulas in double (softplus's threshold included), the
// backward by central differences, with strided input rows and output columns outside [0, 2 nV) left
// untouched.
#include <cmath>

#include "grad_check.h"
#include "ops/gdn_gates.h"

namespace tune {

namespace {

// ba rows (T, ld): b ~ N(0, 2); a ~ N(0, 3), plus 30 on every third row so that a + dt_bias passes the
// softplus threshold of 20 there (and stays clear of it: the derivative jumps at the threshold).
std::vector<double> make_ba(int64_t T, int64_t nV, int64_t ld, uint64_t seed) {
  auto ba = test::randv(size_t(T * ld), seed, 2.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h)
      ba[size_t(t * ld + nV + h)] = 1.5 * ba[size_t(t * ld + nV + h)] + (t % 3 == 2 ? 30 : 0);
  return ba;
}

}  // namespace

TEST(GdnGates, MatchesFormula) {
  const int64_t T = 6, nV = 5, ld = 2 * nV + 3;
  const auto ba = make_ba(T, nV, ld, 1), A_log = test::randv(nV, 2, 0.5, 1.0), dt_bias = test::randv(nV, 3);
  std::vector<double> beta(T * nV), g(T * nV);
  cpu::gdn_gates_fwd(ba.data(), ld, A_log.data(), dt_bias.data(), beta.data(), g.data(), T, nV);
  std::vector<float> baf(ba.begin(), ba.end()), Af(A_log.begin(), A_log.end()),
      dtf(dt_bias.begin(), dt_bias.end()), betaf(T * nV), gf(T * nV);
  cpu::gdn_gates_fwd(baf.data(), ld, Af.data(), dtf.data(), betaf.data(), gf.data(), T, nV);
  int above = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const size_t i = size_t(t * nV + h);
      const double x = ba[size_t(t * ld + nV + h)] + dt_bias[size_t(h)];
      above += x > 20;
      const double wb = 1.0 / (1.0 + std::exp(-ba[size_t(t * ld + h)]));
      const double wg = -std::exp(A_log[size_t(h)]) * (x > 20 ? x : std::log(1.0 + std::exp(x)));
      EXPECT_NEAR(beta[i], wb, 1e-15);
      EXPECT_NEAR(g[i], wg, 1e-13 * std::fabs(wg));
      EXPECT_NEAR(betaf[i], wb, 1e-7);
      EXPECT_NEAR(gf[i], wg, 1e-6 * std::fabs(wg));
    }
  EXPECT_EQ(above, 2 * nV);  // rows 2 and 5 take the linear branch
}

TEST(GdnGates, GradCheck) {
  for (int64_t nV : {int64_t(1), int64_t(4), int64_t(7)}) {
    SCOPED_TRACE(testing::Message() << "nV " << nV);
    const int64_t T = 5, ld = 2 * nV + 2, ld_d = 2 * nV + 5;
    auto ba = make_ba(T, nV, ld, 4);
    const auto A_log = test::randv(size_t(nV), 5, 0.5, 1.0), dt_bias = test::randv(size_t(nV), 6);
    const auto gb = test::randv(size_t(T * nV), 7), gg = test::randv(size_t(T * nV), 8);
    auto loss = [&] {
      std::vector<double> beta(gb.size()), g(gg.size());
      cpu::gdn_gates_fwd(ba.data(), ld, A_log.data(), dt_bias.data(), beta.data(), g.data(), T, nV);
      return test::weighted_sum(beta, gb) + test::weighted_sum(g, gg);
    };
    std::vector<double> dba(size_t(T * ld_d), 7.0);
    cpu::gdn_gates_bwd(ba.data(), ld, A_log.data(), dt_bias.data(), gb.data(), gg.data(), dba.data(), ld_d, T,
                       nV);
    std::vector<double> analytic(ba.size(), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < ld_d; ++j) {
        const double d = dba[size_t(t * ld_d + j)];
        if (j < 2 * nV)
          analytic[size_t(t * ld + j)] = d;
        else
          EXPECT_EQ(d, 7.0) << "column " << j << " written";
      }
    test::expect_grad("dba", ba, analytic, loss);
  }
}

}  // namespace tune
