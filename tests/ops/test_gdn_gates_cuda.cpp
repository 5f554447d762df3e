// gdn_gates on CUDA against the CPU reference in double: bf16 inputs in strided rows, f32 gates, the softplus
// threshold (a + dt_bias > 20 on every third row), and dba's columns past [0, 2 nV) left untouched.
#include "cuda_test_util.h"
#include "ops/gdn_gates.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(GdnGatesCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, nV, pad;
  };
  for (Case c : {Case{5, 3, 1}, Case{100, 16, 0}, Case{100, 32, 7}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " nV " << c.nV << " pad " << c.pad);
    const int64_t ld = 2 * c.nV + c.pad, ld_d = ld + 3;
    Tensor ba = test::randn({c.T, ld}, 1, 2.0f);
    for (int64_t t = 2; t < c.T; t += 3)
      for (int64_t h = 0; h < c.nV; ++h) ba.f32()[t * ld + c.nV + h] += 30.0f;
    ba = test::rounded(ba, DType::BF16);
    const Tensor A_log = test::randn({c.nV}, 2, 0.5f, 1.0f), dt_bias = test::randn({c.nV}, 3);
    const Tensor dbeta = test::randn({c.T, c.nV}, 4), dg = test::randn({c.T, c.nV}, 5);
    const Tensor base = test::rounded(test::randn({c.T, ld_d}, 6), DType::BF16);  // dba before the call

    const std::vector<double> bad = test::doubles(ba), Ad = test::doubles(A_log),
                              dtd = test::doubles(dt_bias), dbd = test::doubles(dbeta),
                              dgd = test::doubles(dg);
    std::vector<double> beta_ref(size_t(c.T * c.nV)), g_ref(beta_ref.size());
    cpu::gdn_gates_fwd(bad.data(), ld, Ad.data(), dtd.data(), beta_ref.data(), g_ref.data(), c.T, c.nV);
    std::vector<double> dba_ref = test::doubles(base);
    cpu::gdn_gates_bwd(bad.data(), ld, Ad.data(), dtd.data(), dbd.data(), dgd.data(), dba_ref.data(), ld_d,
                       c.T, c.nV);

    const Tensor bac = test::on_cuda(ba, DType::BF16), Ac = test::on_cuda(A_log, DType::F32),
                 dtc = test::on_cuda(dt_bias, DType::F32), dbc = test::on_cuda(dbeta, DType::F32),
                 dgc = test::on_cuda(dg, DType::F32);
    Tensor beta = test::poisoned({c.T, c.nV}, DType::F32), g = test::poisoned({c.T, c.nV}, DType::F32);
    cuda::gdn_gates_fwd(bac.data(), ld, Ac.ptr<float>(), dtc.ptr<float>(), beta.ptr<float>(), g.ptr<float>(),
                        c.T, c.nV);
    // f32 outputs: expf / log1pf within a few ulp and a + dt_bias rounded once to fp32.
    test::expect_all_close("beta", beta, beta_ref, 1e-6, 1e-5);
    test::expect_all_close("g", g, g_ref, 1e-6, 1e-5);

    Tensor dba = test::poisoned_cols(base, 0, 2 * c.nV, DType::BF16);
    cuda::gdn_gates_bwd(bac.data(), ld, Ac.ptr<float>(), dtc.ptr<float>(), dbc.ptr<float>(), dgc.ptr<float>(),
                        dba.data(), ld_d, c.T, c.nV);
    test::expect_all_close("dba", dba, dba_ref, 1e-5, test::kBf16Rtol);  // bf16: one rounding per output
  }
}

#else

TEST(GdnGatesCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
