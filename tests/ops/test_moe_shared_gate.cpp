// moe_shared_gate on the CPU: the forward against its formula and the backward by central differences (w.r.t.
// the input through the gate logit, and the shared expert's output).
#include "grad_check.h"
#include "ops/moe_shared_gate.h"

namespace tune {

TEST(MoeSharedGate, MatchesFormula) {
  const int64_t T = 3, H = 5;
  const auto x = test::randv(T * H, 1), w = test::randv(H, 2), ys = test::randv(T * H, 3),
             o0 = test::randv(T * H, 4);
  std::vector<double> logit(T), out = o0;
  cpu::moe_shared_gate_fwd(x.data(), w.data(), ys.data(), T, H, logit.data(), out.data());
  for (int64_t t = 0; t < T; ++t) {
    double l = 0;
    for (int64_t j = 0; j < H; ++j) l += x[size_t(t * H + j)] * w[size_t(j)];
    EXPECT_NEAR(logit[size_t(t)], l, 1e-12);
    for (int64_t j = 0; j < H; ++j)
      EXPECT_NEAR(out[size_t(t * H + j)], o0[size_t(t * H + j)] + ys[size_t(t * H + j)] / (1 + std::exp(-l)),
                  1e-12);
  }
  // A null out computes the logits only (the backward's recompute).
  std::vector<double> logit_only(T);
  cpu::moe_shared_gate_fwd(x.data(), w.data(), ys.data(), T, H, logit_only.data(), static_cast<double*>(nullptr));
  for (int64_t t = 0; t < T; ++t) EXPECT_EQ(logit_only[size_t(t)], logit[size_t(t)]);
}

TEST(MoeSharedGate, GradCheck) {
  const int64_t T = 4, H = 7;
  auto x = test::randv(T * H, 5), ys = test::randv(T * H, 6);
  const auto w = test::randv(H, 7, 0.5), g = test::randv(T * H, 8);
  auto loss = [&] {
    std::vector<double> logit(T), out(size_t(T * H), 0.0);
    cpu::moe_shared_gate_fwd(x.data(), w.data(), ys.data(), T, H, logit.data(), out.data());
    return test::weighted_sum(out, g);
  };
  std::vector<double> logit(T), out(size_t(T * H), 0.0), dys(size_t(T * H)), dx(size_t(T * H), 0.0);
  cpu::moe_shared_gate_fwd(x.data(), w.data(), ys.data(), T, H, logit.data(), out.data());
  cpu::moe_shared_gate_bwd(w.data(), ys.data(), logit.data(), g.data(), T, H, dys.data(), dx.data());
  test::expect_grad("dx", x, dx, loss);
  test::expect_grad("dys", ys, dys, loss);
}

}  // namespace tune
