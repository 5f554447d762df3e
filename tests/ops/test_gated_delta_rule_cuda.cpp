// gated_delta_rule on CUDA (the chunked kernels) against the CPU recurrence in double on bf16-rounded inputs:
// one document, packed documents with starts inside chunks, lengths that 64 does not divide, nV 1..4, head dims
// 64 and 128, fast and slow decay; outputs o and gradients dq, dk, dv, dg, dbeta. Tolerance: relative L2 error
// <= 1e-2 per output (bf16 storage of o/dq/dk/dv rounds each element by up to 2^-9; the chunk products, whose
// fp32 operands enter as two bf16 halves, and the fp32 state add less).
#include <cmath>
#include <cstdio>
#include <tuple>

#include "cuda_test_util.h"
#include "ops/gated_delta_rule.h"

namespace tune {

#ifdef TUNE_CUDA
namespace {

constexpr double kRelL2 = 1e-2;

double rel_l2(const Tensor& got, const std::vector<double>& ref) {
  const std::vector<double> g = test::doubles(got);
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) num += (g[i] - ref[i]) * (g[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / std::max(den, 1e-300));  // NaN (an unwritten element) fails the comparison
}

struct Case {
  int64_t T, nV, dk, dv;
  std::vector<int64_t> starts;  // document starts (empty: no doc_start)
  double decay = 0.7;           // g = -decay softplus(x): 0.7 forgets within a chunk, 0.002 carries across chunks
};

// q, k L2-normalized (q also scaled by dk^-0.5), g = -decay softplus(x) <= 0, beta = sigmoid(x): the model's ranges.
void run_case(const Case& cs, uint64_t seed) {
  const int64_t T = cs.T, nV = cs.nV, dk = cs.dk, dv = cs.dv;
  Tensor q = test::randn({T, nV, dk}, seed), k = test::randn({T, nV, dk}, seed + 1);
  Tensor v = test::randn({T, nV, dv}, seed + 2), g = test::randn({T, nV}, seed + 3, 1.0f, 1.0f);
  Tensor beta = test::randn({T, nV}, seed + 4), dout = test::randn({T, nV, dv}, seed + 5);
  for (Tensor* t : {&q, &k})
    for (int64_t r = 0; r < T * nV; ++r) {
      float* x = t->f32() + r * dk;
      double ss = 0;
      for (int64_t i = 0; i < dk; ++i) ss += double(x[i]) * x[i];
      const double s = 1.0 / std::sqrt(ss + 1e-6) / (t == &q ? std::sqrt(double(dk)) : 1.0);
      for (int64_t i = 0; i < dk; ++i) x[i] = float(x[i] * s);
    }
  for (int64_t i = 0; i < T * nV; ++i) {
    g.f32()[i] = float(-cs.decay * std::log1p(std::exp(double(g.f32()[i]))));
    beta.f32()[i] = float(1.0 / (1.0 + std::exp(-double(beta.f32()[i]))));
  }
  q = test::rounded(q, DType::BF16), k = test::rounded(k, DType::BF16), v = test::rounded(v, DType::BF16);
  dout = test::rounded(dout, DType::BF16);
  std::vector<int32_t> ds;
  for (size_t d = 0; d < cs.starts.size(); ++d)
    for (int64_t t = cs.starts[d]; t < (d + 1 < cs.starts.size() ? cs.starts[d + 1] : T); ++t)
      ds.push_back(int32_t(cs.starts[d]));
  const int32_t* dsp = ds.empty() ? nullptr : ds.data();

  const auto qd = test::doubles(q), kd = test::doubles(k), vd = test::doubles(v), gd = test::doubles(g),
             bd = test::doubles(beta), dod = test::doubles(dout);
  std::vector<double> o(size_t(T * nV * dv)), dq(qd.size()), dkk(kd.size()), dvv(vd.size()), dg(gd.size()),
      db(bd.size());
  cpu::gated_delta_rule_fwd(qd.data(), kd.data(), vd.data(), gd.data(), bd.data(), dsp, o.data(), T, nV, dk, dv);
  cpu::gated_delta_rule_bwd(qd.data(), kd.data(), vd.data(), gd.data(), bd.data(), dsp, dod.data(), dq.data(),
                            dkk.data(), dvv.data(), dg.data(), db.data(), T, nV, dk, dv);

  const Tensor qc = test::on_cuda(q, DType::BF16), kc = test::on_cuda(k, DType::BF16),
               vc = test::on_cuda(v, DType::BF16), gc = test::on_cuda(g, DType::F32),
               bc = test::on_cuda(beta, DType::F32), doc = test::on_cuda(dout, DType::BF16);
  const Tensor dsc = ds.empty() ? Tensor() : test::ints_on_cuda(ds);
  const int32_t* dsd = ds.empty() ? nullptr : dsc.ptr<int32_t>();
  Tensor oc = test::poisoned({T, nV, dv}, DType::BF16), dqc = test::poisoned({T, nV, dk}, DType::BF16),
         dkc = test::poisoned({T, nV, dk}, DType::BF16), dvc = test::poisoned({T, nV, dv}, DType::BF16),
         dgc = test::poisoned({T, nV}, DType::F32), dbc = test::poisoned({T, nV}, DType::F32);
  const size_t ws_bytes = cuda::gated_delta_rule_workspace_bytes(T, nV, dk, dv, true);
  const Tensor ws = Tensor::empty(DType::U8, {int64_t(ws_bytes)}, Device::CUDA);
  cuda::gated_delta_rule_fwd(qc.data(), kc.data(), vc.data(), gc.ptr<float>(), bc.ptr<float>(), dsd, oc.data(),
                             ws.data(), T, nV, dk, dv, nullptr);
  cuda::gated_delta_rule_bwd(qc.data(), kc.data(), vc.data(), gc.ptr<float>(), bc.ptr<float>(), dsd, doc.data(),
                             dqc.data(), dkc.data(), dvc.data(), dgc.ptr<float>(), dbc.ptr<float>(), ws.data(), T,
                             nV, dk, dv, nullptr);
  for (auto [name, got, ref] : {std::tuple<const char*, const Tensor*, const std::vector<double>*>{"o", &oc, &o},
                                {"dq", &dqc, &dq},
                                {"dk", &dkc, &dkk},
                                {"dv", &dvc, &dvv},
                                {"dg", &dgc, &dg},
                                {"dbeta", &dbc, &db}}) {
    const double e = rel_l2(*got, *ref);
    EXPECT_LE(e, kRelL2) << name;
    std::printf("  T %lld nV %lld dk %lld dv %lld docs %zu  %-5s rel L2 %.2e\n", (long long)T, (long long)nV,
                (long long)dk, (long long)dv, cs.starts.size(), name, e);
  }
}

}  // namespace

TEST(GatedDeltaRuleCuda, MatchesRecurrence) {
  TUNE_REQUIRE_CUDA();
  const Case cases[] = {
      {64, 1, 64, 64, {}},                          // one full chunk, one document
      {130, 3, 64, 128, {}},                        // partial last chunk
      {200, 2, 128, 64, {0, 5, 64, 70, 150, 151}},  // starts inside chunks, at a chunk start, 1-token document
      {333, 4, 128, 128, {0, 100, 101, 290}},
      {1000, 2, 128, 128, {0, 77, 500, 512, 999}},
      {1000, 1, 128, 128, {}},
      {1000, 2, 128, 128, {0, 600}, 0.002},  // slow decay: the state carries across many chunks
  };
  uint64_t seed = 100;
  for (const Case& cs : cases) {
    SCOPED_TRACE(testing::Message() << "T " << cs.T << " nV " << cs.nV << " dk " << cs.dk << " dv " << cs.dv);
    run_case(cs, seed += 10);
  }
}

TEST(GatedDeltaRuleCuda, UnsupportedHeadDimIsAnError) {
  TUNE_REQUIRE_CUDA();
  EXPECT_FALSE(cuda::gated_delta_rule_supported(96, 128));
  EXPECT_FALSE(cuda::gated_delta_rule_supported(128, 32));
  EXPECT_THROW(cuda::gated_delta_rule_fwd(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 4,
                                          1, 96, 128, nullptr),
               std::exception);
}

#else

TEST(GatedDeltaRuleCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
