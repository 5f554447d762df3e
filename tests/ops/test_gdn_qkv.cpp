// gdn_qkv on the CPU: the forward against the formulas written out in double (strided conv rows, value heads
// repeating key heads), and the backward by central differences, including nV > nK and the untouched columns.
#include <cmath>

#include "grad_check.h"
#include "ops/gdn_qkv.h"

namespace tune {

namespace {

struct Case {
  int64_t T, nK, nV, dk, dv, pad;  // pad: columns past the q | k | v parts in each conv row
  int64_t width() const { return 2 * nK * dk + nV * dv; }
  int64_t ld() const { return width() + pad; }
};

double silu(double x) {
  return x / (1.0 + std::exp(-x));
}

}  // namespace

TEST(GdnQkv, MatchesFormula) {
  for (Case c : {Case{3, 2, 6, 5, 3, 4}, Case{4, 1, 1, 7, 4, 0}, Case{2, 3, 3, 4, 6, 1}}) {
    for (double scale : {0.05, 1.0, 4.0}) {
      SCOPED_TRACE(testing::Message()
                   << "T " << c.T << " heads " << c.nK << "/" << c.nV << " scale " << scale);
      const auto conv = test::randv(size_t(c.T * c.ld()), 1, scale);
      std::vector<double> q(size_t(c.T * c.nV * c.dk)), k(q.size()), v(size_t(c.T * c.nV * c.dv));
      cpu::gdn_qkv_fwd(conv.data(), c.ld(), q.data(), k.data(), v.data(), c.T, c.nK, c.nV, c.dk, c.dv);
      std::vector<float> convf(conv.begin(), conv.end()), qf(q.size()), kf(k.size()), vf(v.size());
      cpu::gdn_qkv_fwd(convf.data(), c.ld(), qf.data(), kf.data(), vf.data(), c.T, c.nK, c.nV, c.dk, c.dv);
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t h = 0; h < c.nV; ++h) {
          const int64_t kh =
              h * c.nK / c.nV;  // repeat_interleave: nV / nK consecutive value heads per key head
          const double* row = conv.data() + t * c.ld();
          double nq = 0, nk = 0;
          for (int64_t i = 0; i < c.dk; ++i) {
            nq += std::pow(silu(row[kh * c.dk + i]), 2);
            nk += std::pow(silu(row[(c.nK + kh) * c.dk + i]), 2);
          }
          for (int64_t i = 0; i < c.dk; ++i) {
            const size_t o = size_t((t * c.nV + h) * c.dk + i);
            const double wq = silu(row[kh * c.dk + i]) / std::sqrt(nq + 1e-6) / std::sqrt(double(c.dk));
            const double wk = silu(row[(c.nK + kh) * c.dk + i]) / std::sqrt(nk + 1e-6);
            EXPECT_NEAR(q[o], wq, 1e-14);
            EXPECT_NEAR(k[o], wk, 1e-14);
            EXPECT_NEAR(qf[o], wq, 1e-6 * std::fabs(wq) + 1e-9);
            EXPECT_NEAR(kf[o], wk, 1e-6 * std::fabs(wk) + 1e-9);
          }
          for (int64_t i = 0; i < c.dv; ++i) {
            const size_t o = size_t((t * c.nV + h) * c.dv + i);
            const double wv = silu(row[2 * c.nK * c.dk + h * c.dv + i]);
            EXPECT_NEAR(v[o], wv, 1e-14);
            EXPECT_NEAR(vf[o], wv, 1e-6 * std::fabs(wv) + 1e-9);
          }
        }
    }
  }
}

// L = sum(Gq q) + sum(Gk k) + sum(Gv v) over every element of the strided conv rows (the pad columns have
// zero gradient); dconv has its own stride and its pad columns must keep their values.
TEST(GdnQkv, GradCheck) {
  for (Case c :
       {Case{3, 2, 6, 5, 3, 2}, Case{2, 1, 1, 7, 4, 0}, Case{2, 3, 3, 4, 6, 1}, Case{1, 1, 4, 3, 2, 0}}) {
    for (double scale : {0.05, 1.0, 4.0}) {
      SCOPED_TRACE(testing::Message()
                   << "T " << c.T << " heads " << c.nK << "/" << c.nV << " scale " << scale);
      auto conv = test::randv(size_t(c.T * c.ld()), 2, scale);
      const auto gq = test::randv(size_t(c.T * c.nV * c.dk), 3), gk = test::randv(gq.size(), 4),
                 gv = test::randv(size_t(c.T * c.nV * c.dv), 5);
      auto loss = [&] {
        std::vector<double> q(gq.size()), k(gk.size()), v(gv.size());
        cpu::gdn_qkv_fwd(conv.data(), c.ld(), q.data(), k.data(), v.data(), c.T, c.nK, c.nV, c.dk, c.dv);
        return test::weighted_sum(q, gq) + test::weighted_sum(k, gk) + test::weighted_sum(v, gv);
      };
      const int64_t ld_d = c.width() + 3;
      std::vector<double> dconv(size_t(c.T * ld_d), 7.0);
      cpu::gdn_qkv_bwd(conv.data(), c.ld(), gq.data(), gk.data(), gv.data(), dconv.data(), ld_d, c.T, c.nK,
                       c.nV, c.dk, c.dv);
      std::vector<double> analytic(conv.size(), 0.0);
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t j = 0; j < ld_d; ++j) {
          const double d = dconv[size_t(t * ld_d + j)];
          if (j < c.width())
            analytic[size_t(t * c.ld() + j)] = d;
          else
            EXPECT_EQ(d, 7.0) << "pad column " << j << " written";
        }
      test::expect_grad("dconv", conv, analytic, loss);
    }
  }
}

}  // namespace tune
