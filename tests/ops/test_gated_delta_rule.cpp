// gated_delta_rule_fwd: the per-token recurrence matches the chunked (parallel) formulation transformers and FLA
// use for training, computed here in double with a chunk size that does not divide T; a packed row of documents
// (doc_start) equals running each document on its own.
#include <cmath>

#include "ops/gated_delta_rule.h"
#include "op_test_util.h"

namespace tune {

namespace {

struct Inputs {
  Tensor q, k, v, g, beta;
};

// q, k L2-normalized (q also scaled by dk^-0.5, as the model prepares them), g <= 0, beta in (0, 1).
Inputs make_inputs(int64_t T, int64_t nV, int64_t dk, int64_t dv, uint64_t seed) {
  Inputs in{test::randn({T, nV, dk}, seed), test::randn({T, nV, dk}, seed + 1), test::randn({T, nV, dv}, seed + 2),
            test::randn({T, nV}, seed + 3), test::randn({T, nV}, seed + 4)};
  for (Tensor* t : {&in.q, &in.k}) {
    for (int64_t r = 0; r < T * nV; ++r) {
      float* x = t->f32() + r * dk;
      double ss = 0;
      for (int64_t i = 0; i < dk; ++i) ss += double(x[i]) * x[i];
      const double s = 1.0 / std::sqrt(ss + 1e-6) * (t == &in.q ? 1.0 / std::sqrt(double(dk)) : 1.0);
      for (int64_t i = 0; i < dk; ++i) x[i] = float(x[i] * s);
    }
  }
  for (int64_t i = 0; i < T * nV; ++i) {
    in.g.f32()[i] = float(-0.7 * std::log1p(std::exp(double(in.g.f32()[i]))));
    in.beta.f32()[i] = float(1.0 / (1.0 + std::exp(-double(in.beta.f32()[i]))));
  }
  return in;
}

// The chunked formulation over positions [s0, s1) of head h (state from zero), chunk size C, in double:
//   G = cumsum(g) in the chunk; D_ij = exp(G_i - G_j) (j <= i);
//   u = (I + strict_lower((beta K K^T) . D))^{-1} (beta V - (beta K . exp(G)) S)   (forward substitution)
//   O = (Q . exp(G)) S + lower_incl((Q K^T) . D) u;  S = exp(G_last) S + (K . exp(G_last - G))^T u
std::vector<double> chunked(const Inputs& in, int64_t s0, int64_t s1, int64_t h, int64_t C) {
  const int64_t nV = in.q.size(1), dk = in.q.size(2), dv = in.v.size(2);
  auto q = [&](int64_t t, int64_t i) { return double(in.q.f32()[(t * nV + h) * dk + i]); };
  auto k = [&](int64_t t, int64_t i) { return double(in.k.f32()[(t * nV + h) * dk + i]); };
  auto v = [&](int64_t t, int64_t j) { return double(in.v.f32()[(t * nV + h) * dv + j]); };
  auto kdot = [&](int64_t a, int64_t b, bool query) {
    double s = 0;
    for (int64_t i = 0; i < dk; ++i) s += (query ? q(a, i) : k(a, i)) * k(b, i);
    return s;
  };
  std::vector<double> S(size_t(dk * dv), 0.0), out(size_t((s1 - s0) * dv));
  for (int64_t c0 = s0; c0 < s1; c0 += C) {
    const int64_t n = std::min(C, s1 - c0);
    std::vector<double> G(static_cast<size_t>(n)), u(static_cast<size_t>(n * dv));
    for (int64_t i = 0; i < n; ++i) G[size_t(i)] = (i ? G[size_t(i - 1)] : 0.0) + in.g.f32()[(c0 + i) * nV + h];
    for (int64_t i = 0; i < n; ++i) {
      const double b = in.beta.f32()[(c0 + i) * nV + h];
      for (int64_t j = 0; j < dv; ++j) {
        double ks = 0;
        for (int64_t a = 0; a < dk; ++a) ks += k(c0 + i, a) * S[size_t(a * dv + j)];
        double r = b * v(c0 + i, j) - b * std::exp(G[size_t(i)]) * ks;
        for (int64_t m = 0; m < i; ++m)
          r -= b * kdot(c0 + i, c0 + m, false) * std::exp(G[size_t(i)] - G[size_t(m)]) * u[size_t(m * dv + j)];
        u[size_t(i * dv + j)] = r;
      }
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < dv; ++j) {
        double o = 0;
        for (int64_t a = 0; a < dk; ++a) o += q(c0 + i, a) * std::exp(G[size_t(i)]) * S[size_t(a * dv + j)];
        for (int64_t m = 0; m <= i; ++m)
          o += kdot(c0 + i, c0 + m, true) * std::exp(G[size_t(i)] - G[size_t(m)]) * u[size_t(m * dv + j)];
        out[size_t((c0 + i - s0) * dv + j)] = o;
      }
    const double Gl = G[size_t(n - 1)];
    for (int64_t a = 0; a < dk; ++a)
      for (int64_t j = 0; j < dv; ++j) {
        double s = std::exp(Gl) * S[size_t(a * dv + j)];
        for (int64_t m = 0; m < n; ++m) s += k(c0 + m, a) * std::exp(Gl - G[size_t(m)]) * u[size_t(m * dv + j)];
        S[size_t(a * dv + j)] = s;
      }
  }
  return out;
}

void expect_head(const Tensor& o, const std::vector<double>& ref, int64_t s0, int64_t s1, int64_t h) {
  const int64_t nV = o.size(1), dv = o.size(2);
  for (int64_t t = s0; t < s1; ++t)
    for (int64_t j = 0; j < dv; ++j) {
      const double want = ref[size_t((t - s0) * dv + j)];
      ASSERT_NEAR(o.f32()[(t * nV + h) * dv + j], want, 2e-6 + 2e-5 * std::fabs(want))
          << "t " << t << " head " << h << " j " << j;
    }
}

}  // namespace

TEST(GatedDeltaRule, MatchesChunkedFormulation) {
  const int64_t T = 23, nV = 3, dk = 8, dv = 5;
  const Inputs in = make_inputs(T, nV, dk, dv, 11);
  Tensor o = Tensor::empty(DType::F32, {T, nV, dv});
  gated_delta_rule_fwd(in.q, in.k, in.v, in.g, in.beta, nullptr, o);
  for (int64_t C : {int64_t(1), int64_t(4), int64_t(64)})
    for (int64_t h = 0; h < nV; ++h) expect_head(o, chunked(in, 0, T, h, C), 0, T, h);
}

TEST(GatedDeltaRule, FirstTokenIsBetaVTimesQK) {
  // From a zero state: S = beta k v^T, so o = beta (q . k) v.
  const int64_t nV = 2, dk = 4, dv = 3;
  const Inputs in = make_inputs(1, nV, dk, dv, 21);
  Tensor o = Tensor::empty(DType::F32, {1, nV, dv});
  gated_delta_rule_fwd(in.q, in.k, in.v, in.g, in.beta, nullptr, o);
  for (int64_t h = 0; h < nV; ++h) {
    double qk = 0;
    for (int64_t i = 0; i < dk; ++i) qk += double(in.q.f32()[h * dk + i]) * in.k.f32()[h * dk + i];
    for (int64_t j = 0; j < dv; ++j)
      EXPECT_NEAR(o.f32()[h * dv + j], in.beta.f32()[h] * qk * in.v.f32()[h * dv + j], 1e-6);
  }
}

TEST(GatedDeltaRule, DocStartResetsTheState) {
  const int64_t nV = 2, dk = 6, dv = 4;
  const int64_t bounds[] = {0, 5, 6, 19, 26};  // documents of 5, 1, 13 and 7 tokens
  const int64_t T = bounds[4];
  const Inputs in = make_inputs(T, nV, dk, dv, 31);
  Tensor docs = Tensor::empty(DType::I32, {T}), o = Tensor::empty(DType::F32, {T, nV, dv});
  for (int d = 0; d < 4; ++d)
    for (int64_t t = bounds[d]; t < bounds[d + 1]; ++t) docs.ptr<int32_t>()[t] = int32_t(bounds[d]);
  gated_delta_rule_fwd(in.q, in.k, in.v, in.g, in.beta, &docs.view(), o);
  for (int d = 0; d < 4; ++d) {
    const int64_t s0 = bounds[d], s1 = bounds[d + 1], n = s1 - s0;
    for (int64_t h = 0; h < nV; ++h) expect_head(o, chunked(in, s0, s1, h, 4), s0, s1, h);
    // The same document alone gives bit-identical outputs.
    Tensor od = Tensor::empty(DType::F32, {n, nV, dv});
    gated_delta_rule_fwd(in.q.slice_rows(s0, s1).clone(), in.k.slice_rows(s0, s1).clone(),
                         in.v.slice_rows(s0, s1).clone(), in.g.slice_rows(s0, s1).clone(),
                         in.beta.slice_rows(s0, s1).clone(), nullptr, od);
    for (int64_t i = 0; i < n * nV * dv; ++i) EXPECT_EQ(od.f32()[i], o.f32()[s0 * nV * dv + i]) << "doc " << d;
  }
  // Without doc_start the later documents see the earlier ones.
  Tensor o1 = Tensor::empty(DType::F32, {T, nV, dv});
  gated_delta_rule_fwd(in.q, in.k, in.v, in.g, in.beta, nullptr, o1);
  EXPECT_NE(o1.f32()[bounds[3] * nV * dv], o.f32()[bounds[3] * nV * dv]);
}

}  // namespace tune

#include "grad_check.h"

namespace tune {

// Every input of the recurrence against central differences of sum(G * o), in double, with and without
// document starts (the state and its gradient stop at a boundary).
TEST(GatedDeltaRule, GradCheck) {
  const int64_t T = 7, nV = 2, dk = 3, dv = 4;
  const std::vector<int32_t> ds = {0, 0, 0, 3, 3, 3, 6};
  for (bool docs : {false, true}) {
    const int32_t* d = docs ? ds.data() : nullptr;
    auto q = test::randv(T * nV * dk, 61, 0.5), k = test::randv(T * nV * dk, 62, 0.5);
    auto v = test::randv(T * nV * dv, 63), g = test::randv(T * nV, 64, 0.3, -0.5),
         b = test::randv(T * nV, 65, 0.2, 0.5);
    auto G = test::randv(T * nV * dv, 66);
    auto loss = [&] {
      std::vector<double> o(T * nV * dv);
      cpu::gated_delta_rule_fwd(q.data(), k.data(), v.data(), g.data(), b.data(), d, o.data(), T, nV, dk, dv);
      return test::weighted_sum(o, G);
    };
    std::vector<double> dq(q.size()), dkk(k.size()), dvv(v.size()), dg(g.size()), db(b.size());
    cpu::gated_delta_rule_bwd(q.data(), k.data(), v.data(), g.data(), b.data(), d, G.data(), dq.data(),
                              dkk.data(), dvv.data(), dg.data(), db.data(), T, nV, dk, dv);
    test::expect_grad("dq", q, dq, loss);
    test::expect_grad("dk", k, dkk, loss);
    test::expect_grad("dv", v, dvv, loss);
    test::expect_grad("dg", g, dg, loss);
    test::expect_grad("dbeta", b, db, loss);
  }
}

TEST(GatedDeltaRule, BwdF32MatchesDouble) {
  const int64_t T = 9, nV = 2, dk = 4, dv = 3;
  const Inputs in = make_inputs(T, nV, dk, dv, 71);
  Tensor dout = test::randn({T, nV, dv}, 72);
  Tensor dq = Tensor::empty(DType::F32, {T, nV, dk}), dk_ = Tensor::empty(DType::F32, {T, nV, dk}),
         dv_ = Tensor::empty(DType::F32, {T, nV, dv}), dg = Tensor::empty(DType::F32, {T, nV}),
         db = Tensor::empty(DType::F32, {T, nV});
  gated_delta_rule_bwd(in.q, in.k, in.v, in.g, in.beta, nullptr, dout, dq, dk_, dv_, dg, db);
  auto dbl = [](const Tensor& t) { return std::vector<double>(t.f32(), t.f32() + t.numel()); };
  auto q = dbl(in.q), k = dbl(in.k), v = dbl(in.v), g = dbl(in.g), b = dbl(in.beta), G = dbl(dout);
  std::vector<double> rq(q.size()), rk(k.size()), rv(v.size()), rg(g.size()), rb(b.size());
  cpu::gated_delta_rule_bwd(q.data(), k.data(), v.data(), g.data(), b.data(), nullptr, G.data(), rq.data(),
                            rk.data(), rv.data(), rg.data(), rb.data(), T, nV, dk, dv);
  test::expect_close(dq.f32(), rq, 1e-5, 1e-5);
  test::expect_close(dk_.f32(), rk, 1e-5, 1e-5);
  test::expect_close(dv_.f32(), rv, 1e-5, 1e-5);
  test::expect_close(dg.f32(), rg, 1e-5, 1e-5);
  test::expect_close(db.f32(), rb, 1e-5, 1e-5);
}

// The chunked form (the CUDA kernels' algorithm) equals the recurrence in double to rounding: chunks of 64 and of
// 4, lengths that chunks do not divide, and documents that start inside a chunk, at a chunk start and at t = 1.
TEST(GatedDeltaRule, ChunkedFormEqualsRecurrence) {
  const int64_t nV = 2, dk = 8, dv = 4;
  for (int64_t T : {int64_t(1), int64_t(63), int64_t(64), int64_t(150)}) {
    std::vector<int32_t> ds(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) ds[size_t(t)] = t < 1 ? 0 : t < 64 ? 1 : t < 100 ? 64 : 100;
    for (bool docs : {false, true}) {
      const int32_t* d = docs ? ds.data() : nullptr;
      auto q = test::randv(T * nV * dk, 81, 0.3), k = test::randv(T * nV * dk, 82, 0.3);
      auto v = test::randv(T * nV * dv, 83), g = test::randv(T * nV, 84, 0.2, -0.3),
           b = test::randv(T * nV, 85, 0.2, 0.5);
      std::vector<double> want(static_cast<size_t>(T * nV * dv)), got(want.size());
      cpu::gated_delta_rule_fwd(q.data(), k.data(), v.data(), g.data(), b.data(), d, want.data(), T, nV, dk, dv);
      for (int64_t chunk : {int64_t(4), int64_t(64)}) {
        cpu::gated_delta_rule_chunked_fwd(q.data(), k.data(), v.data(), g.data(), b.data(), d, got.data(), T, nV,
                                          dk, dv, chunk);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-10) << "T " << T << " docs " << docs << " chunk " << chunk << " at " << i;
      }
    }
  }
}

}  // namespace tune
