// swiglu on CUDA against the CPU reference in double: f32 and bf16 storage, odd sizes, outputs aliasing
// inputs.
#include "cuda_test_util.h"
#include "ops/swiglu.h"

namespace tune {

TEST(SwiGluCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  for (Shape shape : {Shape{5, 7, 3}, Shape{1, 1}, Shape{333, 301}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(testing::Message() << shape.str() << " " << dtype_name(dt));
      const int64_t n = shape.numel();
      const Tensor g = test::rounded(test::randn(shape, 1, 3.0f), dt),
                   u = test::rounded(test::randn(shape, 2), dt);
      const Tensor dh = test::rounded(test::randn(shape, 3), dt);
      std::vector<double> gd = test::doubles(g), ud = test::doubles(u), dhd = test::doubles(dh);
      std::vector<double> h_ref(static_cast<size_t>(n)), dg_ref(h_ref), du_ref(h_ref);
      cpu::swiglu_fwd(gd.data(), ud.data(), h_ref.data(), n);
      cpu::swiglu_bwd(gd.data(), ud.data(), dhd.data(), dg_ref.data(), du_ref.data(), n);

      // f32: expf within a few ulp; bf16: one rounding of each output.
      const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol, atol = dt == DType::F32 ? 1e-6 : 1e-4;
      const Tensor gc = test::on_cuda(g, dt), uc = test::on_cuda(u, dt), dhc = test::on_cuda(dh, dt);
      Tensor h = test::poisoned(shape, dt);
      swiglu_fwd(gc, uc, h);
      test::expect_all_close("h", h, h_ref, atol, rtol);
      Tensor gi = test::on_cuda(g, dt);
      swiglu_fwd(gi, uc, gi);  // h aliasing g
      test::expect_all_close("h in place", gi, h_ref, atol, rtol);

      Tensor dg = test::poisoned(shape, dt), du = test::poisoned(shape, dt);
      swiglu_bwd(gc, uc, dhc, dg, du);
      test::expect_all_close("dg", dg, dg_ref, atol, rtol);
      test::expect_all_close("du", du, du_ref, atol, rtol);
      Tensor dhi = test::on_cuda(dh, dt);
      swiglu_bwd(gc, uc, dhi, dhi, du);  // dg aliasing dh
      test::expect_all_close("dg in place", dhi, dg_ref, atol, rtol);
    }
  }
}

#ifdef TUNE_CUDA
// The training path's layout: gate and up side by side in one row, bf16, rows ldgu = 2I + extra apart (the
// backward's LoRA columns after them, which must stay as they are); h rows ld = I + extra apart (the down
// projection's LoRA columns beside them). I 136 takes the 16-byte kernels, 130 the 4-byte ones.
TEST(SwiGluCuda, FusedRowsMatchCpuReference) {
  TUNE_REQUIRE_CUDA();
  const int64_t T = 37;
  for (int64_t I : {130, 136})
    for (int64_t extra : {0, 16}) {
      SCOPED_TRACE(testing::Message() << "I " << I << " ld " << I + extra);
      const int64_t ld = I + extra, ldgu = 2 * I + extra;
      const Tensor gu = test::rounded(test::randn({T, ldgu}, 5, 3.0f), DType::BF16);
      const Tensor dh = test::rounded(test::randn({T, I}, 6), DType::BF16);
      const std::vector<double> a = test::doubles(gu), dhd = test::doubles(dh);
      std::vector<double> h_ref(size_t(T * ld)), dgu_ref = a;
      for (int64_t t = 0; t < T; ++t) {
        const double* g = a.data() + t * ldgu;
        cpu::swiglu_fwd(g, g + I, h_ref.data() + t * ld, I);
        cpu::swiglu_bwd(g, g + I, dhd.data() + t * I, dgu_ref.data() + t * ldgu, dgu_ref.data() + t * ldgu + I, I);
      }
      const Tensor gud = test::on_cuda(gu, DType::BF16), dhdv = test::on_cuda(dh, DType::BF16);
      Tensor h = test::on_cuda(Tensor::zeros(DType::F32, {T, ld}), DType::BF16);  // the columns past I stay 0
      cuda::swiglu_fused_fwd(gud.data(), h.data(), T, I, ld, ldgu);
      test::expect_all_close("h", h, h_ref, 1e-4, test::kBf16Rtol);
      Tensor dgu = test::on_cuda(gu, DType::BF16);  // in place, as the training path runs it
      cuda::swiglu_fused_bwd(dgu.data(), dhdv.data(), dgu.data(), T, I, ldgu);
      test::expect_all_close("dgu", dgu, dgu_ref, 1e-4, test::kBf16Rtol);
      // The backward that also remakes h, over dh (rows I apart): the same dgu, and h equal to the forward's.
      Tensor dgu_h = test::on_cuda(gu, DType::BF16), dh_h = test::on_cuda(dh, DType::BF16);
      cuda::swiglu_fused_bwd(dgu_h.data(), dh_h.data(), dgu_h.data(), T, I, ldgu, dh_h.data());
      test::expect_all_close("dgu with h", dgu_h, dgu_ref, 1e-4, test::kBf16Rtol);
      const std::vector<double> hf = test::doubles(h), hb = test::doubles(dh_h);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < I; ++j)
          ASSERT_EQ(hb[size_t(t * I + j)], hf[size_t(t * ld + j)]) << "h over dh at " << t << ", " << j;
    }
}
#endif

}  // namespace tune
