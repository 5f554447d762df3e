// swiglu_lora_bwd on CUDA against the composition of the CPU references it fuses (swiglu_fwd/bwd, lora_b_bwd
// and the dA product), in double from bf16 inputs; dg, du and h enter the products as bf16, as the kernel
// stores them. Widths that are not multiples of the 128-column blocks, T not a multiple of the 32-row chunks,
// several row splits, more rows than one slab, strided rows (gu's LoRA columns past 2I keep their values),
// with and without the down LoRA. dB and dA accumulate onto what was there.
#include <cmath>

#include "core/dtype.h"
#include "cuda_test_util.h"
#include "ops/lora_b_bwd.h"
#include "ops/swiglu.h"
#include "ops/swiglu_lora_bwd.h"

namespace tune {

#ifdef TUNE_CUDA
namespace {
double bf16_round(double x) {
  return double(bf16_to_f32(f32_to_bf16(float(x))));
}
double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s / double(v.size()));
}
}  // namespace

TEST(SwigluLoraBwdCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, I;
    bool down;
  };
  const std::vector<Case> cases = {
      {300, 200, true}, {130, 136, false}, {4096, 1024, true}, {16384 + 100, 128, true}};
  const DType bf = DType::BF16;
  const int64_t r = 16;
  const float s = 0.5f;
  for (const Case& c : cases) {
    const int64_t T = c.T, I = c.I, ldgu = 2 * I + 2 * r + 8, lddh = I + 8, ldu = 2 * r + 8, ldgd = r + 8;
    SCOPED_TRACE(testing::Message() << "T " << T << " I " << I << " down " << c.down);
    const Tensor gu = test::rounded(test::randn({T, ldgu}, 1, 2.0f), bf),
                 dh = test::rounded(test::randn({T, lddh}, 2), bf);
    const Tensor u = test::rounded(test::randn({T, ldu}, 3), bf),
                 gd = test::rounded(test::randn({T, ldgd}, 4), bf);
    const Tensor bg = test::rounded(test::randn({I, r}, 5), bf),
                 bu = test::rounded(test::randn({I, r}, 6), bf);
    const Tensor dbg0 = test::randn({I, r}, 7), dbu0 = test::randn({I, r}, 8), da0 = test::randn({r, I}, 9);

    // g lands in gu's columns [2I, 2I + 2r), as in training (the gate/up group's folded input gradient); the
    // columns past it keep their values.
    Tensor guc = test::poisoned_cols(gu, 2 * I, 2 * I + 2 * r, bf);
    const Tensor dhc = test::on_cuda(dh, bf), uc = test::on_cuda(u, bf), gdc = test::on_cuda(gd, bf);
    const Tensor bgc = test::on_cuda(bg, bf), buc = test::on_cuda(bu, bf);
    Tensor dbgc = test::on_cuda(dbg0, DType::F32), dbuc = test::on_cuda(dbu0, DType::F32),
           dac = test::on_cuda(da0, DType::F32);
    cuda::SwigluLoraBwd p;
    p.T = T, p.I = I, p.r = r;
    p.gu = guc.data(), p.ldgu = ldgu;
    p.dh = dhc.data(), p.lddh = lddh;
    p.u = uc.data(), p.ldu = ldu;
    p.b_gate = bgc.data(), p.b_up = buc.data();
    p.db_gate = dbgc.ptr<float>(), p.db_up = dbuc.ptr<float>();
    p.g = static_cast<char*>(guc.data()) + 2 * I * 2, p.ldg = ldgu;
    p.s = s;
    if (c.down) p.gd = gdc.data(), p.ldgd = ldgd, p.da = dac.ptr<float>();
    ASSERT_TRUE(cuda::swiglu_lora_bwd_supported(p));
    const int64_t ws_bytes = cuda::swiglu_lora_bwd_workspace_bytes(T, r);
    const Tensor ws = Tensor::empty(DType::U8, {ws_bytes}, Device::CUDA);
    cuda::swiglu_lora_bwd(p, ws.data(), ws_bytes);

    // The reference. dg and du against the SwiGLU's in double; the products from the dg and du the kernel
    // stored (its fast exp and division round some of them differently from double, by an ulp), so that they
    // check the products alone. h (not an output) enters dA rounded from double.
    const std::vector<double> gud = test::doubles(gu), dhd = test::doubles(dh), ud = test::doubles(u),
                              gdd = test::doubles(gd), got = test::doubles(guc);
    std::vector<double> dgu_ref = gud, dgk(size_t(T * I)), duk(dgk), hb(dgk);
    for (int64_t t = 0; t < T; ++t) {
      const double* g = gud.data() + t * ldgu;
      double dg[1], du[1], h[1];
      for (int64_t j = 0; j < I; ++j) {
        cpu::swiglu_bwd(g + j, g + I + j, dhd.data() + t * lddh + j, dg, du, 1);
        cpu::swiglu_fwd(g + j, g + I + j, h, 1);
        dgu_ref[size_t(t * ldgu + j)] = dg[0];
        dgu_ref[size_t(t * ldgu + I + j)] = du[0];
        hb[size_t(t * I + j)] = bf16_round(h[0]);
        dgk[size_t(t * I + j)] = got[size_t(t * ldgu + j)];
        duk[size_t(t * I + j)] = got[size_t(t * ldgu + I + j)];
      }
    }
    std::vector<double> dbg_ref = test::doubles(dbg0), dbu_ref = test::doubles(dbu0),
                        da_ref = test::doubles(da0);
    cpu::lora_b_bwd(dgk.data(), I, ud.data(), ldu, test::doubles(bg).data(), s, dbg_ref.data(),
                    dgu_ref.data() + 2 * I, ldgu, false, T, I, r);
    cpu::lora_b_bwd(duk.data(), I, ud.data() + r, ldu, test::doubles(bu).data(), s, dbu_ref.data(),
                    dgu_ref.data() + 2 * I + r, ldgu, false, T, I, r);
    if (c.down)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < r; ++j)
          for (int64_t i = 0; i < I; ++i)
            da_ref[size_t(j * I + i)] += gdd[size_t(t * ldgd + j)] * hb[size_t(t * I + i)];

    // dg, du and g are stored as bf16: one rounding each; g's near-zero sums within a small share of its
    // scale.
    std::vector<double> g_ref;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < 2 * r; ++j) g_ref.push_back(dgu_ref[size_t(t * ldgu + 2 * I + j)]);
    const double g_atol = 1e-3 * rms(g_ref);
    int64_t bad = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < ldgu; ++j) {
        const size_t i = size_t(t * ldgu + j);
        const double atol = j < 2 * I ? 1e-4 : j < 2 * I + 2 * r ? g_atol : 0.0;
        const double rtol = j < 2 * I + 2 * r ? test::kBf16Rtol : 0.0;
        if (!(std::fabs(got[i] - dgu_ref[i]) <= atol + rtol * std::fabs(dgu_ref[i])) && bad++ < 5)
          ADD_FAILURE() << "gu row " << t << " column " << j << ": got " << got[i] << ", want " << dgu_ref[i];
      }
    EXPECT_EQ(bad, 0) << "elements of dgu | g | the untouched columns outside tolerance";
    // dB: fp32 sums of the products of bf16 values (exact in fp32). dA: its h may differ from the reference's
    // by an ulp here and there.
    const double da_rms = rms(da_ref);
    test::expect_all_close("dB gate", dbgc, dbg_ref, 1e-5 * std::sqrt(double(T)), 1e-5);
    test::expect_all_close("dB up", dbuc, dbu_ref, 1e-5 * std::sqrt(double(T)), 1e-5);
    test::expect_all_close("dA down", dac, da_ref, 3e-3 * da_rms, 1e-2);
  }
}
#else
TEST(SwigluLoraBwdCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}
#endif

}  // namespace tune
