// gated_rmsnorm on the CPU: the forward against the formula in double over several magnitudes, the backward
// by central differences, with z (and dz) in strided rows whose other columns stay untouched.
#include <cmath>

#include "grad_check.h"
#include "ops/gated_rmsnorm.h"

namespace tune {

TEST(GatedRmsNorm, MatchesFormula) {
  const int64_t T = 3, nV = 2, dv = 7, ldz = nV * dv + 3;
  const double eps = 1e-6;
  for (double scale : {1e-3, 1.0, 50.0}) {
    SCOPED_TRACE(testing::Message() << "scale " << scale);
    const auto o = test::randv(size_t(T * nV * dv), 1, scale), z = test::randv(size_t(T * ldz), 2, 2.0),
               w = test::randv(size_t(dv), 3, 0.3, 1.0);
    std::vector<double> y(o.size());
    cpu::gated_rmsnorm_fwd(o.data(), z.data(), ldz, w.data(), eps, y.data(), T, nV, dv);
    std::vector<float> of(o.begin(), o.end()), zf(z.begin(), z.end()), wf(w.begin(), w.end()), yf(o.size());
    cpu::gated_rmsnorm_fwd(of.data(), zf.data(), ldz, wf.data(), float(eps), yf.data(), T, nV, dv);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nV; ++h) {
        double ms = 0;
        for (int64_t j = 0; j < dv; ++j) ms += std::pow(o[size_t((t * nV + h) * dv + j)], 2) / double(dv);
        for (int64_t j = 0; j < dv; ++j) {
          const size_t i = size_t((t * nV + h) * dv + j);
          const double zj = z[size_t(t * ldz + h * dv + j)];
          const double want = w[size_t(j)] * o[i] / std::sqrt(ms + eps) * zj / (1.0 + std::exp(-zj));
          EXPECT_NEAR(y[i], want, 1e-14 * (1 + std::fabs(want)));
          EXPECT_NEAR(yf[i], want, 1e-5 * std::fabs(want) + 1e-7);
        }
      }
  }
}

TEST(GatedRmsNorm, GradCheck) {
  for (int64_t dv : {int64_t(1), int64_t(5), int64_t(8)}) {
    for (double scale : {0.01, 1.0, 30.0}) {
      SCOPED_TRACE(testing::Message() << "dv " << dv << " scale " << scale);
      const int64_t T = 3, nV = 3, ldz = nV * dv + 2;
      const double eps = 1e-6;
      auto o = test::randv(size_t(T * nV * dv), 4, scale), z = test::randv(size_t(T * ldz), 5, 2.0);
      const auto w = test::randv(size_t(dv), 6, 0.3, 1.0), gy = test::randv(o.size(), 7);
      auto loss = [&] {
        std::vector<double> y(o.size());
        cpu::gated_rmsnorm_fwd(o.data(), z.data(), ldz, w.data(), eps, y.data(), T, nV, dv);
        return test::weighted_sum(y, gy);
      };
      std::vector<double> d_o(o.size()), dz(z.size(), 7.0);
      cpu::gated_rmsnorm_bwd(o.data(), z.data(), ldz, w.data(), eps, gy.data(), d_o.data(), dz.data(), T, nV,
                             dv);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = nV * dv; j < ldz; ++j) {
          EXPECT_EQ(dz[size_t(t * ldz + j)], 7.0) << "column " << j << " written";
          dz[size_t(t * ldz + j)] = 0.0;  // z's pad columns do not reach y
        }
      test::expect_grad("do", o, d_o, loss);
      test::expect_grad("dz", z, dz, loss);
    }
  }
}

}  // namespace tune
