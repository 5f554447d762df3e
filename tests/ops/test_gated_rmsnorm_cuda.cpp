// gated_rmsnorm on CUDA against the CPU reference in double, bf16 storage (w f32): z and dz in strided rows
// (dz's columns past nV dv must keep their values), head dims that allow no vectors (scalar loads), 8-byte
// vectors (dv <= 128), 16-byte vectors (dv 256), and the real shapes.
#include "cuda_test_util.h"
#include "ops/gated_rmsnorm.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(GatedRmsNormCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, nV, dv, pad;
  };
  for (Case c : {Case{5, 3, 7, 3}, Case{4, 2, 6, 2}, Case{7, 3, 64, 4}, Case{3, 2, 256, 8},
                 Case{100, 32, 128, 0}, Case{100, 16, 128, 64}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " nV " << c.nV << " dv " << c.dv << " pad " << c.pad);
    const int64_t W = c.nV * c.dv, ldz = W + c.pad;
    const float eps = 1e-6f;
    const Tensor o = test::rounded(test::randn({c.T, W}, 1, 0.5f), DType::BF16),
                 z = test::rounded(test::randn({c.T, ldz}, 2, 2.0f), DType::BF16),
                 dy = test::rounded(test::randn({c.T, W}, 4), DType::BF16);
    const Tensor w = test::randn({c.dv}, 3, 0.3f, 1.0f);
    const Tensor base = test::rounded(test::randn({c.T, ldz}, 5), DType::BF16);  // dz before the call

    const std::vector<double> od = test::doubles(o), zd = test::doubles(z), dyd = test::doubles(dy),
                              wd = test::doubles(w);
    std::vector<double> y_ref(size_t(c.T * W)), do_ref(y_ref.size()), dz_ref = test::doubles(base);
    cpu::gated_rmsnorm_fwd(od.data(), zd.data(), ldz, wd.data(), double(eps), y_ref.data(), c.T, c.nV, c.dv);
    cpu::gated_rmsnorm_bwd(od.data(), zd.data(), ldz, wd.data(), double(eps), dyd.data(), do_ref.data(),
                           dz_ref.data(), c.T, c.nV, c.dv);

    // bf16: one rounding of each output (kBf16Rtol); fp32 sums over dv <= 256 O(1) terms stay far below atol.
    const double atol = 1e-5, rtol = test::kBf16Rtol;
    const Tensor oc = test::on_cuda(o, DType::BF16), zc = test::on_cuda(z, DType::BF16),
                 dyc = test::on_cuda(dy, DType::BF16), wc = test::on_cuda(w, DType::F32);
    Tensor y = test::poisoned({c.T, W}, DType::BF16);
    cuda::gated_rmsnorm_fwd(oc.data(), zc.data(), ldz, wc.ptr<float>(), eps, y.data(), c.T, c.nV, c.dv);
    test::expect_all_close("y", y, y_ref, atol, rtol);

    Tensor d_o = test::poisoned({c.T, W}, DType::BF16), dz = test::poisoned_cols(base, 0, W, DType::BF16);
    cuda::gated_rmsnorm_bwd(oc.data(), zc.data(), ldz, wc.ptr<float>(), eps, dyc.data(), d_o.data(),
                            dz.data(), c.T, c.nV, c.dv);
    test::expect_all_close("d_o", d_o, do_ref, atol, rtol);
    test::expect_all_close("dz", dz, dz_ref, atol, rtol);
  }
}

#else

TEST(GatedRmsNormCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
