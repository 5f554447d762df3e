// lora_b_bwd on the CPU: dB and du against central differences of L = sum(G * y), y = s u B^T (strided dy and
// u), and the accumulation rules (dB +=, du overwritten or added to).
#include "grad_check.h"
#include "ops/lora_b_bwd.h"

namespace tune {

TEST(LoraBBwd, GradCheck) {
  const int64_t T = 5, N = 6, r = 3, ldy = 8, ldu = 4, lddu = 5;
  const float s = 0.75f;
  auto u = test::randv(size_t(T * ldu), 1), b = test::randv(size_t(N * r), 2);
  const auto gy = test::randv(size_t(T * ldy), 3);
  auto loss = [&] {
    double l = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double y = 0;
        for (int64_t j = 0; j < r; ++j) y += double(s) * u[size_t(t * ldu + j)] * b[size_t(n * r + j)];
        l += gy[size_t(t * ldy + n)] * y;
      }
    return l;
  };
  const auto db0 = test::randv(size_t(N * r), 4);
  auto db = db0;
  std::vector<double> du(size_t(T * lddu), 9.0);
  cpu::lora_b_bwd(gy.data(), ldy, u.data(), ldu, b.data(), s, db.data(), du.data(), lddu, false, T, N, r);
  std::vector<double> ab(b.size()), au(u.size(), 0.0);
  for (size_t i = 0; i < ab.size(); ++i) ab[i] = db[i] - db0[i];  // dB accumulates onto what was there
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < r; ++j) au[size_t(t * ldu + j)] = du[size_t(t * lddu + j)];
    for (int64_t j = r; j < lddu; ++j) EXPECT_EQ(du[size_t(t * lddu + j)], 9.0);  // past r: untouched
  }
  test::expect_grad("dB", b, ab, loss);
  test::expect_grad("du", u, au, loss);
  auto du2 = du;  // accumulate_du adds the same again
  cpu::lora_b_bwd(gy.data(), ldy, u.data(), ldu, b.data(), s, db.data(), du2.data(), lddu, true, T, N, r);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r; ++j)
      EXPECT_NEAR(du2[size_t(t * lddu + j)], 2 * du[size_t(t * lddu + j)], 1e-12);
}

}  // namespace tune
