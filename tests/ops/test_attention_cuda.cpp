// attention on CUDA against the CPU reference in double: GQA ratios, odd head dims, packed documents (one
// longer than the kernel's 128-key chunk), the largest head dim, f32 and bf16; forward and all three
// gradients.
#include "cuda_test_util.h"
#include "ops/attention.h"

namespace tune {

namespace {
struct Case {
  int64_t T, nH, nKV, d;
  std::vector<int32_t> docs;  // document lengths; empty = one document without doc_start
};

std::vector<int32_t> doc_starts(const Case& c) {
  std::vector<int32_t> s;
  for (int32_t len : c.docs) {
    const int32_t b = int32_t(s.size());
    for (int32_t i = 0; i < len; ++i) s.push_back(b);
  }
  return s;
}
}  // namespace

TEST(AttentionCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  const std::vector<Case> cases = {
      {7, 4, 4, 5, {}},
      {7, 6, 2, 5, {}},
      {9, 4, 2, 3, {4, 2, 3}},
      {5, 3, 1, 8, {1, 1, 3}},
      {300, 4, 2, 64, {100, 150, 50}},
      {150, 2, 1, 256, {}},
      {200, 12, 4, 128, {37, 163}},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::F32, DType::BF16}) {
      if (dt == DType::BF16 && c.d < 4) continue;  // the backward needs 8 bytes per head row
      SCOPED_TRACE(testing::Message() << "T " << c.T << " heads " << c.nH << "/" << c.nKV << " d " << c.d
                                      << (c.docs.empty() ? "" : " packed") << " " << dtype_name(dt));
      const float scale = float(1.0 / std::sqrt(double(c.d)));
      const Tensor q = test::rounded(test::randn({c.T, c.nH, c.d}, 21, 1.5f), dt);
      const Tensor k = test::rounded(test::randn({c.T, c.nKV, c.d}, 22, 1.5f), dt);
      const Tensor v = test::rounded(test::randn({c.T, c.nKV, c.d}, 23), dt);
      const Tensor d_o = test::rounded(test::randn({c.T, c.nH, c.d}, 24), dt);
      const std::vector<int32_t> starts = doc_starts(c);
      const int32_t* ds = starts.empty() ? nullptr : starts.data();
      const std::vector<double> qd = test::doubles(q), kd = test::doubles(k), vd = test::doubles(v),
                                dod = test::doubles(d_o);
      std::vector<double> o_ref(qd.size()), dq_ref(qd.size()), dk_ref(kd.size()), dv_ref(vd.size());
      cpu::attention_fwd(qd.data(), kd.data(), vd.data(), ds, double(scale), o_ref.data(), c.T, c.nH, c.nKV,
                         c.d);
      cpu::attention_bwd(qd.data(), kd.data(), vd.data(), ds, double(scale), dod.data(), dq_ref.data(),
                         dk_ref.data(), dv_ref.data(), c.T, c.nH, c.nKV, c.d);

      const Tensor qc = test::on_cuda(q, dt), kc = test::on_cuda(k, dt), vc = test::on_cuda(v, dt),
                   doc = test::on_cuda(d_o, dt);
      Tensor starts_c;
      if (ds) starts_c = test::ints_on_cuda(starts);
      const TensorView* sv = ds ? &starts_c.view() : nullptr;
      Tensor o = test::poisoned(q.shape(), dt);
      attention_fwd(qc, kc, vc, sv, scale, o);
      Tensor dq = test::poisoned(q.shape(), dt), dk = test::poisoned(k.shape(), dt),
             dv = test::poisoned(v.shape(), dt);
      attention_bwd(qc, kc, vc, sv, scale, doc, dq, dk, dv);

      // f32: fp32 softmax and sums (~1e-6 relative); gradients are sums over up to T * group rows, so the
      // absolute part is taken relative to the largest element. bf16: one rounding of each output.
      const double rtol = dt == DType::F32 ? 1e-5 : test::kBf16Rtol, arel = dt == DType::F32 ? 1e-5 : 1e-3;
      test::expect_all_close("o", o, o_ref, arel * test::max_abs(o_ref), rtol);
      test::expect_all_close("dq", dq, dq_ref, arel * test::max_abs(dq_ref), rtol);
      test::expect_all_close("dk", dk, dk_ref, arel * test::max_abs(dk_ref), rtol);
      test::expect_all_close("dv", dv, dv_ref, arel * test::max_abs(dv_ref), rtol);
    }
  }
}

}  // namespace tune
