// conv1d_causal on CUDA against the CPU reference in double: f32 and bf16 storage, f32 or bf16 weights,
// K 1..8, one document and packed documents (starts anywhere, 1-token documents), and dw accumulating.
#include "cuda_test_util.h"
#include "ops/conv1d_causal.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(Conv1dCausalCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  for (auto [T, C, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 4},
                         {37, 100, 4},
                         {300, 8192, 4},
                         {50, 33, 1},
                         {50, 33, 8}}) {
    for (bool docs : {false, true}) {
      std::vector<int32_t> ds(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t)
        ds[size_t(t)] = int32_t(!docs || t < 3 ? 0
                                : t < 4        ? 3
                                : t < 29       ? 4
                                : t < 64       ? 29
                                : t < 130      ? 64
                                               : 130);
      for (DType dt : {DType::F32, DType::BF16}) {
        for (DType wdt : {DType::F32, DType::BF16}) {
          SCOPED_TRACE(testing::Message() << T << "x" << C << " K " << K << (docs ? " docs " : " ")
                                          << dtype_name(dt) << " w " << dtype_name(wdt));
          const Tensor x = test::rounded(test::randn({T, C}, 1), dt),
                       dy = test::rounded(test::randn({T, C}, 2), dt);
          const Tensor w = test::rounded(test::randn({C, K}, 3, 0.5f), wdt), dw0 = test::randn({C, K}, 4);
          const auto xd = test::doubles(x), wd = test::doubles(w), dyd = test::doubles(dy);
          std::vector<double> y(size_t(T * C)), dx(size_t(T * C)), dw = test::doubles(dw0);
          cpu::conv1d_causal_fwd(xd.data(), wd.data(), ds.data(), y.data(), T, C, K);
          cpu::conv1d_causal_bwd(xd.data(), wd.data(), ds.data(), dyd.data(), dx.data(), dw.data(), T, C, K);

          // f32: sums of K fp32 products; bf16: one rounding of each output. dw sums up to T products in
          // fp32.
          const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol,
                       atol = dt == DType::F32 ? 1e-5 : 1e-3;
          const Tensor xc = test::on_cuda(x, dt), wc = test::on_cuda(w, wdt), dyc = test::on_cuda(dy, dt);
          const Tensor dsc = test::ints_on_cuda(ds);
          const int32_t* dsd = docs ? dsc.ptr<int32_t>() : nullptr;
          Tensor yc = test::poisoned({T, C}, dt), dxc = test::poisoned({T, C}, dt),
                 dwc = test::on_cuda(dw0, DType::F32);
          cuda::conv1d_causal_fwd(xc.data(), wc.data(), dsd, yc.data(), T, C, K, dt, wdt);
          test::expect_all_close("y", yc, y, atol, rtol);
          cuda::conv1d_causal_bwd(xc.data(), wc.data(), dsd, dyc.data(), dxc.data(), dwc.ptr<float>(), T, C,
                                  K, dt, wdt);
          test::expect_all_close("dx", dxc, dx, atol, rtol);
          test::expect_all_close("dw", dwc, dw, 1e-4, 1e-5);
          Tensor dx2 = test::poisoned({T, C}, dt);  // without dw
          cuda::conv1d_causal_bwd(xc.data(), wc.data(), dsd, dyc.data(), dx2.data(), nullptr, T, C, K, dt,
                                  wdt);
          test::expect_all_close("dx without dw", dx2, dx, atol, rtol);
        }
      }
    }
  }
}

#else

TEST(Conv1dCausalCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
