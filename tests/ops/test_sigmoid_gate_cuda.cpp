// sigmoid_gate on CUDA against the CPU reference in double, bf16 storage: every operand with its own row
// stride, the gate read at a column offset inside wider rows (as from gated attention's [query_h | gate_h] q
// projection), outputs' other columns left untouched, alignments that allow 1-, 2-, 4- and 8-element vectors,
// y aliasing x, dx aliasing dy and dg aliasing g.
#include "cuda_test_util.h"
#include "ops/sigmoid_gate.h"

namespace tune {

#ifdef TUNE_CUDA
namespace {
// Element `off` of a bf16 buffer on the device.
void* at(const Tensor& t, int64_t off) {
  return static_cast<char*>(t.data()) + off * 2;
}
}  // namespace

TEST(SigmoidGateCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, N, ldx, ldg, goff, ldy;  // g's columns [goff, goff + N) of rows of ldg
  };
  for (Case c : {Case{5, 7, 9, 11, 1, 8}, Case{6, 12, 14, 18, 2, 12}, Case{9, 12, 16, 24, 4, 20},
                 Case{100 * 16, 256, 256, 512, 256, 256}, Case{100, 4096, 4096, 8192, 0, 4104}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " N " << c.N << " ld " << c.ldx << "/" << c.ldg << "+"
                                    << c.goff << "/" << c.ldy);
    const DType bf = DType::BF16;
    const Tensor x = test::rounded(test::randn({c.T, c.ldx}, 1), bf),
                 g = test::rounded(test::randn({c.T, c.ldg}, 2, 3.0f), bf),
                 dy = test::rounded(test::randn({c.T, c.ldy}, 3), bf);
    const Tensor ybase = test::rounded(test::randn({c.T, c.ldy}, 4), bf);  // outputs before the calls
    const std::vector<double> xd = test::doubles(x), gd = test::doubles(g), dyd = test::doubles(dy);
    const double* gp = gd.data() + c.goff;

    // bf16: one rounding of each output (kBf16Rtol) on O(1) values.
    const double atol = 1e-5, rtol = test::kBf16Rtol;
    const Tensor xc = test::on_cuda(x, bf), gc = test::on_cuda(g, bf), dyc = test::on_cuda(dy, bf);

    std::vector<double> y_ref = test::doubles(ybase);
    cpu::sigmoid_gate_fwd(xd.data(), c.ldx, gp, c.ldg, y_ref.data(), c.ldy, c.T, c.N);
    Tensor y = test::poisoned_cols(ybase, 0, c.N, bf);
    cuda::sigmoid_gate_fwd(xc.data(), c.ldx, at(gc, c.goff), c.ldg, y.data(), c.ldy, c.T, c.N);
    test::expect_all_close("y", y, y_ref, atol, rtol);

    std::vector<double> xi_ref = xd;  // y aliasing x
    cpu::sigmoid_gate_fwd(xd.data(), c.ldx, gp, c.ldg, xi_ref.data(), c.ldx, c.T, c.N);
    Tensor xi = test::on_cuda(x, bf);
    cuda::sigmoid_gate_fwd(xi.data(), c.ldx, at(gc, c.goff), c.ldg, xi.data(), c.ldx, c.T, c.N);
    test::expect_all_close("y in place", xi, xi_ref, atol, rtol);

    // Backward: dx in x's layout, dg into g's columns of a (T, ldg) buffer, as the training path writes them.
    const Tensor xbase = test::rounded(test::randn({c.T, c.ldx}, 5), bf),
                 gbase = test::rounded(test::randn({c.T, c.ldg}, 6), bf);
    std::vector<double> dx_ref = test::doubles(xbase), dg_ref = test::doubles(gbase);
    cpu::sigmoid_gate_bwd(xd.data(), c.ldx, gp, c.ldg, dyd.data(), c.ldy, dx_ref.data(), c.ldx,
                          dg_ref.data() + c.goff, c.ldg, c.T, c.N);
    Tensor dx = test::poisoned_cols(xbase, 0, c.N, bf),
           dg = test::poisoned_cols(gbase, c.goff, c.goff + c.N, bf);
    cuda::sigmoid_gate_bwd(xc.data(), c.ldx, at(gc, c.goff), c.ldg, dyc.data(), c.ldy, dx.data(), c.ldx,
                           at(dg, c.goff), c.ldg, c.T, c.N);
    test::expect_all_close("dx", dx, dx_ref, atol, rtol);
    test::expect_all_close("dg", dg, dg_ref, atol, rtol);

    std::vector<double> dyi_ref = dyd;  // dx aliasing dy
    cpu::sigmoid_gate_bwd(xd.data(), c.ldx, gp, c.ldg, dyd.data(), c.ldy, dyi_ref.data(), c.ldy,
                          dg_ref.data() + c.goff, c.ldg, c.T, c.N);
    Tensor dyi = test::on_cuda(dy, bf);
    dg = test::poisoned_cols(gbase, c.goff, c.goff + c.N, bf);
    cuda::sigmoid_gate_bwd(xc.data(), c.ldx, at(gc, c.goff), c.ldg, dyi.data(), c.ldy, dyi.data(), c.ldy,
                           at(dg, c.goff), c.ldg, c.T, c.N);
    test::expect_all_close("dx in place", dyi, dyi_ref, atol, rtol);
    test::expect_all_close("dg (dx in place)", dg, dg_ref, atol, rtol);

    std::vector<double> gi_ref = gd;  // dg aliasing g
    cpu::sigmoid_gate_bwd(xd.data(), c.ldx, gp, c.ldg, dyd.data(), c.ldy, dx_ref.data(), c.ldx,
                          gi_ref.data() + c.goff, c.ldg, c.T, c.N);
    Tensor gi = test::on_cuda(g, bf);
    dx = test::poisoned_cols(xbase, 0, c.N, bf);
    cuda::sigmoid_gate_bwd(xc.data(), c.ldx, at(gi, c.goff), c.ldg, dyc.data(), c.ldy, dx.data(), c.ldx,
                           at(gi, c.goff), c.ldg, c.T, c.N);
    test::expect_all_close("dg in place", gi, gi_ref, atol, rtol);
    test::expect_all_close("dx (dg in place)", dx, dx_ref, atol, rtol);
  }
}

#else

TEST(SigmoidGateCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
