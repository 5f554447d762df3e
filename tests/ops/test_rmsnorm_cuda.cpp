// rmsnorm on CUDA against the CPU reference in double: f32 and bf16 storage, f32 or bf16 weights, plain and
// zero-centred, odd row lengths, in place, and dw accumulating.
#include "cuda_test_util.h"
#include "ops/rmsnorm.h"

namespace tune {

TEST(RmsNormCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  const float eps = 1e-6f;
  for (auto [R, C] : {std::pair<int64_t, int64_t>{5, 7}, {37, 1000}, {3, 4099}, {64, 128}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      for (DType wdt : {DType::F32, DType::BF16}) {
        if (dt == DType::F32 && wdt == DType::BF16) continue;
        for (bool zc : {false, true}) {
          SCOPED_TRACE(testing::Message() << R << "x" << C << " " << dtype_name(dt) << " w "
                                          << dtype_name(wdt) << (zc ? " zero-centred" : ""));
          const Tensor x = test::rounded(test::randn({R, C}, 1, 2.0f), dt);
          const Tensor w = test::rounded(test::randn({C}, 2, 0.3f, zc ? 0.0f : 1.0f), wdt);
          const Tensor dy = test::rounded(test::randn({R, C}, 3), dt);
          const Tensor dw0 = test::randn({C}, 4);
          std::vector<double> xd = test::doubles(x), wd = test::doubles(w), dyd = test::doubles(dy);
          std::vector<double> y_ref(size_t(R * C)), dx_ref(size_t(R * C)), dw_ref = test::doubles(dw0);
          cpu::rmsnorm_fwd(xd.data(), wd.data(), double(eps), zc, y_ref.data(), R, C);
          cpu::rmsnorm_bwd(xd.data(), wd.data(), dyd.data(), double(eps), zc, dx_ref.data(), dw_ref.data(), R,
                           C);

          // f32: fp32 sums over a row (~1e-6 relative); bf16: one rounding of each output. dw is f32 either
          // way and sums R rows of O(1) terms.
          const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol,
                       atol = dt == DType::F32 ? 1e-5 : 1e-3;
          const Tensor xc = test::on_cuda(x, dt), wc = test::on_cuda(w, wdt), dyc = test::on_cuda(dy, dt);
          Tensor y = test::poisoned({R, C}, dt);
          rmsnorm_fwd(xc, wc, eps, zc, y);
          test::expect_all_close("y", y, y_ref, atol, rtol);
          Tensor xi = test::on_cuda(x, dt);
          rmsnorm_fwd(xi, wc, eps, zc, xi);  // y aliasing x
          test::expect_all_close("y in place", xi, y_ref, atol, rtol);

          Tensor dx = test::poisoned({R, C}, dt), dw = test::on_cuda(dw0, DType::F32);
          rmsnorm_bwd(xc, wc, dyc, eps, zc, dx, &dw.view());
          test::expect_all_close("dx", dx, dx_ref, atol, rtol);
          test::expect_all_close("dw", dw, dw_ref, 1e-4, 1e-5);
          Tensor dyi = test::on_cuda(dy, dt);
          rmsnorm_bwd(xc, wc, dyi, eps, zc, dyi, nullptr);  // dx aliasing dy, no dw
          test::expect_all_close("dx in place", dyi, dx_ref, atol, rtol);
        }
      }
    }
  }
}

TEST(RmsNormCuda, UnsupportedDtypeIsAnError) {
  TUNE_REQUIRE_CUDA();
  Tensor x = test::on_cuda(test::randn({2, 4}, 1), DType::F16),
         w = test::on_cuda(test::randn({4}, 2), DType::F16);
  EXPECT_THROW(rmsnorm_fwd(x, w, 1e-6f, false, x), UnsupportedError);
}

#ifdef TUNE_CUDA
// The training path's residual backward: dres (f32) += rmsnorm_bwd(x, w, dy) and its bf16 copy; and the forward
// into rows ld apart (LoRA columns beside them). C 1003 takes the block-per-row kernels, the others the
// warp-per-row ones: rows held in registers, 4 to 20 16-byte chunks a lane (the last one partial for some lanes
// at 1120, 2504, 3592 and 4104), or walked in a loop (1016 in the backward, 5128 in both).
TEST(RmsNormCuda, ResidualBackwardMatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  const int64_t R = 29;
  for (int64_t C : {1120, 1003, 1016, 2504, 3592, 4104, 5128})
    for (bool zc : {false, true}) {
      SCOPED_TRACE(testing::Message() << "C " << C << " zc " << zc);
      const Tensor x = test::rounded(test::randn({R, C}, 1, 2.0f), DType::BF16);
      const Tensor dy = test::rounded(test::randn({R, C}, 2), DType::BF16);
      const Tensor w = test::randn({C}, 3, 0.3f, zc ? 0.0f : 1.0f), dres0 = test::randn({R, C}, 4);
      const std::vector<double> xd = test::doubles(x), wd = test::doubles(w), dyd = test::doubles(dy);
      std::vector<double> dx(static_cast<size_t>(R * C)), dw(static_cast<size_t>(C)), want = test::doubles(dres0);
      cpu::rmsnorm_bwd(xd.data(), wd.data(), dyd.data(), 1e-6, zc, dx.data(), dw.data(), R, C);
      for (size_t i = 0; i < want.size(); ++i) want[i] += dx[i];
      const Tensor xc = test::on_cuda(x, DType::BF16), dyc = test::on_cuda(dy, DType::BF16),
                   wc = test::on_cuda(w, DType::F32);
      Tensor dres = test::on_cuda(dres0, DType::F32), dres_b = test::poisoned({R, C}, DType::BF16);
      cuda::rmsnorm_bwd_residual(xc.data(), wc.ptr<float>(), dyc.data(), 1e-6f, zc, dres.ptr<float>(), dres_b.data(),
                                 R, C);
      test::expect_all_close("dres", dres, want, 1e-5, 1e-5);
      test::expect_all_close("dres bf16", dres_b, want, 1e-5, test::kBf16Rtol);

      // The bf16 copy into rows ldb apart: the 16 columns after each row keep what they held (here 0).
      const int64_t ldb = C + 16;
      std::vector<double> want_b(static_cast<size_t>(R * ldb), 0.0);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < C; ++c) want_b[size_t(r * ldb + c)] = want[size_t(r * C + c)];
      Tensor dres_s = test::on_cuda(dres0, DType::F32);
      Tensor dres_bs = test::on_cuda(Tensor::zeros(DType::F32, {R, ldb}), DType::BF16);
      cuda::rmsnorm_bwd_residual(xc.data(), wc.ptr<float>(), dyc.data(), 1e-6f, zc, dres_s.ptr<float>(),
                                 dres_bs.data(), R, C, ldb);
      test::expect_all_close("dres bf16 rows ldb apart", dres_bs, want_b, 1e-5, test::kBf16Rtol);

      const int64_t ld = C + 48;
      std::vector<double> y_ref(static_cast<size_t>(R * ld), 0.0);
      for (int64_t r = 0; r < R; ++r)
        cpu::rmsnorm_fwd(xd.data() + r * C, wd.data(), 1e-6, zc, y_ref.data() + r * ld, 1, C);
      Tensor y = test::on_cuda(Tensor::zeros(DType::F32, {R, ld}), DType::BF16);  // the columns past C stay 0
      cuda::rmsnorm_fwd(xc.data(), wc.data(), 1e-6f, zc, y.data(), R, C, DType::BF16, DType::F32, ld);
      test::expect_all_close("y rows ld apart", y, y_ref, 1e-5, test::kBf16Rtol);
    }
}
#endif

}  // namespace tune
