// rope on CUDA against the CPU reference in double (which, like transformers, forms the angles in fp32): f32
// and bf16, full and partial rotary dims, odd head counts, positions up to 32k, forward and backward.
#include "core/rng.h"
#include "cuda_test_util.h"
#include "ops/rope.h"

namespace tune {

TEST(RopeCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, heads, d, rd;
    double theta;
    int32_t max_pos;
  };
  for (const Case& c :
       {Case{5, 7, 3, 2, 10000.0, 20}, Case{6, 3, 12, 12, 10000.0, 20}, Case{33, 5, 10, 6, 1e6, 4000},
        Case{300, 2, 128, 128, 1e6, 32768}, Case{17, 4, 256, 64, 1e7, 32768}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      for (int sign : {+1, -1}) {
        SCOPED_TRACE(testing::Message() << c.T << "x" << c.heads << "x" << c.d << " rd " << c.rd << " "
                                        << dtype_name(dt) << (sign > 0 ? " fwd" : " bwd"));
        const Tensor x = test::rounded(test::randn({c.T, c.heads, c.d}, 5), dt);
        std::vector<int32_t> pos(size_t(c.T));
        Rng rng(6);
        for (int32_t& p : pos) p = int32_t(rng.below(uint64_t(c.max_pos)));
        pos[0] = 0;
        std::vector<double> ref = test::doubles(x);
        cpu::rope(ref.data(), pos.data(), c.T, c.heads, c.d, c.rd, c.theta, sign);

        // Both backends rotate by the same fp32 angle; sin/cos differ by an ulp or two (~2e-7 absolute).
        // bf16: one rounding of each output.
        const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol, atol = dt == DType::F32 ? 1e-5 : 1e-3;
        Tensor xc = test::on_cuda(x, dt);
        const Tensor pc = test::ints_on_cuda(pos);
        if (sign > 0) {
          rope_fwd(xc, pc, c.rd, c.theta);
        } else {
          rope_bwd(xc, pc, c.rd, c.theta);
        }
        test::expect_all_close("x", xc, ref, atol, rtol);
      }
    }
  }
}

}  // namespace tune
