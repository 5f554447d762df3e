// moe_route on CUDA against the CPU reference in double: the same experts in the same order (ties to the
// lower index, which bf16 logits produce), weights and dlogits within tolerance, renormalized or not, k up
// to 32.
#include "cuda_test_util.h"
#include "ops/moe_route.h"

namespace tune {

TEST(MoeRouteCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, E, k;
  };
  for (const Case& c : {Case{6, 7, 1}, Case{6, 7, 3}, Case{37, 64, 8}, Case{5, 128, 8}, Case{3, 100, 32},
                        Case{9, 2048, 4}, Case{40, 33, 2}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      for (bool renorm : {false, true}) {
        SCOPED_TRACE(testing::Message() << "T " << c.T << " E " << c.E << " k " << c.k << " "
                                        << dtype_name(dt) << (renorm ? " renormalized" : ""));
        const Tensor logits = test::rounded(test::randn({c.T, c.E}, 31, 2.0f), dt);
        const Tensor dw = test::rounded(test::randn({c.T, c.k}, 32), dt);
        const std::vector<double> ld = test::doubles(logits), dwd = test::doubles(dw);
        std::vector<int32_t> ex_ref(size_t(c.T * c.k));
        std::vector<double> w_ref(size_t(c.T * c.k)), dl_ref(size_t(c.T * c.E));
        cpu::moe_route_fwd(ld.data(), renorm, ex_ref.data(), w_ref.data(), c.T, c.E, c.k);
        cpu::moe_route_bwd(ld.data(), renorm, ex_ref.data(), dwd.data(), dl_ref.data(), c.T, c.E, c.k);

        const Tensor lc = test::on_cuda(logits, dt);
        Tensor ex = test::on_cuda(Tensor::zeros(DType::I32, {c.T, c.k}), DType::I32);
        Tensor w = test::poisoned({c.T, c.k}, dt);
        moe_route_fwd(lc, renorm, ex, w);
        EXPECT_EQ(test::ints(ex), ex_ref);
        // f32: fp32 softmax (~1e-7 relative); bf16: one rounding of each output.
        const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol, atol = dt == DType::F32 ? 1e-7 : 1e-5;
        test::expect_all_close("weights", w, w_ref, atol, rtol);
        Tensor dl = test::poisoned({c.T, c.E}, dt);
        moe_route_bwd(lc, renorm, ex, test::on_cuda(dw, dt), dl);
        test::expect_all_close("dlogits", dl, dl_ref, atol, rtol);
      }
    }
  }
}

}  // namespace tune
