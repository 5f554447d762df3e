// moe_shared_gate on CUDA against the CPU reference in double, bf16 storage, a real width and odd ones.
#include "cuda_test_util.h"
#include "ops/moe_shared_gate.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(MoeSharedGateCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  for (auto [T, H] : {std::pair<int64_t, int64_t>{3, 7}, {129, 2048}}) {
    SCOPED_TRACE(testing::Message() << T << "x" << H);
    auto bf = [](const Tensor& t) { return test::rounded(t, DType::BF16); };
    const Tensor x = bf(test::randn({T, H}, 1)), w = bf(test::randn({H}, 2, 0.05f)),
                 ys = bf(test::randn({T, H}, 3));
    const Tensor out0 = bf(test::randn({T, H}, 4)), dout = bf(test::randn({T, H}, 5)),
                 dx0 = bf(test::randn({T, H}, 6));
    const auto xd = test::doubles(x), wd = test::doubles(w), yd = test::doubles(ys),
               dod = test::doubles(dout);
    std::vector<double> logit(static_cast<size_t>(T)), out = test::doubles(out0), dys(out.size()),
                                                       dx = test::doubles(dx0);
    cpu::moe_shared_gate_fwd(xd.data(), wd.data(), yd.data(), T, H, logit.data(), out.data());
    cpu::moe_shared_gate_bwd(wd.data(), yd.data(), logit.data(), dod.data(), T, H, dys.data(), dx.data());

    const Tensor xc = test::on_cuda(x, DType::BF16), wc = test::on_cuda(w, DType::BF16),
                 yc = test::on_cuda(ys, DType::BF16), doc = test::on_cuda(dout, DType::BF16);
    Tensor o = test::on_cuda(out0, DType::BF16), lg = test::poisoned({T}, DType::F32);
    cuda::moe_shared_gate_fwd(xc.data(), wc.data(), yc.data(), T, H, static_cast<float*>(lg.data()),
                              o.data());
    test::expect_all_close("logit", lg, logit, 1e-3, 1e-3);
    test::expect_all_close("out", o, out, 1e-3, test::kBf16Rtol);
    Tensor lg_only = test::poisoned({T}, DType::F32);  // a null out: the logits only
    cuda::moe_shared_gate_fwd(xc.data(), wc.data(), yc.data(), T, H, static_cast<float*>(lg_only.data()), nullptr);
    test::expect_all_close("logit only", lg_only, logit, 1e-3, 1e-3);
    Tensor dy = test::poisoned({T, H}, DType::BF16), dxc = test::on_cuda(dx0, DType::BF16);
    cuda::moe_shared_gate_bwd(wc.data(), yc.data(), static_cast<float*>(lg.data()), doc.data(), T, H,
                              dy.data(), dxc.data());
    test::expect_all_close("dys", dy, dys, 1e-3, test::kBf16Rtol);
    test::expect_all_close("dx", dxc, dx, 1e-2, test::kBf16Rtol);
  }
}
#else
TEST(MoeSharedGateCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}
#endif

}  // namespace tune
