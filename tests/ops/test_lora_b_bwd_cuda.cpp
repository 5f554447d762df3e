// lora_b_bwd on CUDA against the CPU reference in double (bf16 operands, so the reference sees what the
// kernel sees): several targets in one call, a target split into two parts (its du is their sum), row counts
// that are not multiples of the kernel's 128-column sub-tiles, T not a multiple of its 64-row chunks, several
// row splits and column blocks, more rows than one slab, fewer rows than the workspace was sized for (a
// shorter batch or last FFN chunk), r of 16 and 32. dB accumulates onto what was there; du's other columns
// are left as they were.
#include <cmath>

#include "cuda_test_util.h"
#include "ops/lora_b_bwd.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(LoraBBwdCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Part {
    int64_t col, rows;  // dy columns [col, col + rows)
    int target;
  };
  struct Case {
    int64_t T, r, ldy;
    std::vector<Part> parts;
    int64_t T_ws = 0;  // the rows the workspace is sized for (0: T); a call may have fewer
  };
  const std::vector<Case> cases = {
      {300, 16, 440, {{0, 256, 0}, {256, 72, 1}, {328, 40, 2}, {400, 24, 2}}},
      {300, 32, 440, {{0, 256, 0}, {256, 72, 1}, {328, 40, 2}, {400, 24, 2}}},
      {130, 32, 200, {{8, 136, 0}, {144, 56, 1}}},
      {4096, 16, 2568, {{0, 2560, 0}}},
      {16384 + 200, 16, 136, {{0, 128, 0}}},
      {7680, 16, 4104, {{0, 2048, 0}, {2048, 1024, 1}, {3072, 1024, 2}}, 8192},
  };
  const DType bf = DType::BF16;
  const float s = 0.5f;
  for (const Case& c : cases) {
    int n_targets = 0;
    for (const Part& p : c.parts) n_targets = std::max(n_targets, p.target + 1);
    const int64_t T = c.T, r = c.r, ldu = n_targets * r + 8, lddu = n_targets * r + 4;
    SCOPED_TRACE(testing::Message() << "T " << T << " r " << r << " parts " << c.parts.size() << " T_ws "
                                    << c.T_ws);
    const Tensor dy = test::rounded(test::randn({T, c.ldy}, 1), bf),
                 u = test::rounded(test::randn({T, ldu}, 2), bf);
    const Tensor du0 = test::rounded(test::randn({T, lddu}, 3), bf);
    std::vector<Tensor> b, db0;
    for (size_t i = 0; i < c.parts.size(); ++i) {
      b.push_back(test::rounded(test::randn({c.parts[i].rows, r}, 10 + i), bf));
      db0.push_back(test::randn({c.parts[i].rows, r}, 20 + i));
    }
    const Tensor dyc = test::on_cuda(dy, bf), uc = test::on_cuda(u, bf), duc = test::on_cuda(du0, bf);
    std::vector<Tensor> bc, dbc;
    std::vector<cuda::LoraBPart> parts;
    std::vector<int64_t> rows;
    for (size_t i = 0; i < c.parts.size(); ++i) {
      const Part& p = c.parts[i];
      bc.push_back(test::on_cuda(b[i], bf));
      dbc.push_back(test::on_cuda(db0[i], DType::F32));
      parts.push_back({static_cast<const char*>(dyc.data()) + p.col * 2,
                       static_cast<const char*>(uc.data()) + p.target * r * 2, bc[i].data(),
                       dbc[i].ptr<float>(), p.rows, p.target});
      rows.push_back(p.rows);
    }
    ASSERT_TRUE(cuda::lora_b_bwd_supported(parts.data(), int(parts.size()), r, c.ldy, ldu, duc.data(), lddu));
    const int64_t ws_bytes =
        cuda::lora_b_bwd_workspace_bytes(c.T_ws > 0 ? c.T_ws : T, r, rows.data(), int(rows.size()));
    const Tensor ws = Tensor::empty(DType::U8, {ws_bytes}, Device::CUDA);
    cuda::lora_b_bwd(parts.data(), int(parts.size()), T, r, c.ldy, ldu, s, duc.data(), lddu, ws.data(),
                     ws_bytes);

    // The reference: per part, dB += and du of its target (the first part of a target overwrites, the next
    // adds).
    const std::vector<double> dyd = test::doubles(dy), ud = test::doubles(u);
    std::vector<double> du_ref = test::doubles(du0);
    std::vector<bool> seen(size_t(n_targets), false);
    double du_rms = 0;
    for (size_t i = 0; i < c.parts.size(); ++i) {
      const Part& p = c.parts[i];
      std::vector<double> db_ref = test::doubles(db0[i]);
      const std::vector<double> bd = test::doubles(b[i]);
      cpu::lora_b_bwd(dyd.data() + p.col, c.ldy, ud.data() + p.target * r, ldu, bd.data(), s, db_ref.data(),
                      du_ref.data() + p.target * r, lddu, seen[size_t(p.target)], T, p.rows, r);
      seen[size_t(p.target)] = true;
      // fp32 sums over T products of bf16 values (exact in fp32): a few ulps of the sum's magnitude.
      test::expect_all_close("dB", dbc[i], db_ref, 1e-5 * std::sqrt(double(T)), 1e-5);
    }
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < n_targets * r; ++j)
        du_rms += du_ref[size_t(t * lddu + j)] * du_ref[size_t(t * lddu + j)];
    du_rms = std::sqrt(du_rms / double(T * n_targets * r));
    // du is stored as bf16: one rounding (kBf16Rtol), and near-zero sums within a small share of its scale.
    // The columns past n_targets r keep du0's values exactly.
    test::expect_all_close("du", duc, du_ref, 1e-3 * du_rms, test::kBf16Rtol);
  }
}
#else
TEST(LoraBBwdCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}
#endif

}  // namespace tune
