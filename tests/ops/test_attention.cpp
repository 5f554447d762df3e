// attention_fwd: against an explicit double softmax with GQA head mapping, and packed documents behave exactly as
// separate sequences.
#include "ops/attention.h"
#include "grad_check.h"
#include "op_test_util.h"

namespace tune {

namespace {
std::vector<double> reference(const Tensor& q, const Tensor& k, const Tensor& v, int64_t begin, int64_t end,
                              float scale) {
  const int64_t nH = q.size(1), nKV = k.size(1), d = q.size(2);
  std::vector<double> out(size_t((end - begin) * nH * d));
  for (int64_t t = begin; t < end; ++t)
    for (int64_t h = 0; h < nH; ++h) {
      const int64_t kh = h / (nH / nKV);
      std::vector<double> s;
      double mx = -1e300, sum = 0;
      for (int64_t u = begin; u <= t; ++u) {
        double dot = 0;
        for (int64_t j = 0; j < d; ++j) dot += double(q.f32()[(t * nH + h) * d + j]) * k.f32()[(u * nKV + kh) * d + j];
        s.push_back(dot * scale);
        mx = std::max(mx, s.back());
      }
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t j = 0; j < d; ++j) {
        double acc = 0;
        for (int64_t u = begin; u <= t; ++u) acc += s[size_t(u - begin)] / sum * v.f32()[(u * nKV + kh) * d + j];
        out[size_t(((t - begin) * nH + h) * d + j)] = acc;
      }
    }
  return out;
}
}  // namespace

TEST(Attention, CausalGqaMatchesReference) {
  const int64_t T = 7, d = 5;
  for (auto [nH, nKV] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {6, 2}, {3, 1}}) {
    Tensor q = test::randn({T, nH, d}, 7), k = test::randn({T, nKV, d}, 8), v = test::randn({T, nKV, d}, 9);
    Tensor o = Tensor::empty(DType::F32, {T, nH, d});
    attention_fwd(q, k, v, nullptr, 0.4f, o);
    test::expect_close(o.f32(), reference(q, k, v, 0, T, 0.4f), 1e-6, 1e-5);
  }
}

TEST(Attention, PackedDocumentsAreIndependent) {
  const int64_t T = 9, nH = 4, nKV = 2, d = 3;
  Tensor q = test::randn({T, nH, d}, 10), k = test::randn({T, nKV, d}, 11), v = test::randn({T, nKV, d}, 12);
  Tensor starts = Tensor::empty(DType::I32, {T});
  const int32_t s[T] = {0, 0, 0, 0, 4, 4, 6, 6, 6};  // documents [0,4), [4,6), [6,9)
  for (int64_t t = 0; t < T; ++t) starts.ptr<int32_t>()[t] = s[t];
  Tensor o = Tensor::empty(DType::F32, {T, nH, d});
  attention_fwd(q, k, v, &starts.view(), 0.5f, o);
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 4}, {4, 6}, {6, 9}})
    test::expect_close(o.f32() + b * nH * d, reference(q, k, v, b, e, 0.5f), 1e-6, 1e-5);
}

}  // namespace tune

namespace tune {

TEST(Attention, GradCheck) {
  const int64_t T = 6, d = 3;
  const int32_t docs[T] = {0, 0, 0, 3, 3, 5};
  for (auto [nH, nKV] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}, {3, 1}}) {
    for (const int32_t* ds : {static_cast<const int32_t*>(nullptr), docs}) {
      auto q = test::randv(T * nH * d, 11), k = test::randv(T * nKV * d, 12), v = test::randv(T * nKV * d, 13);
      auto g = test::randv(T * nH * d, 14);
      auto loss = [&] {
        std::vector<double> o(T * nH * d);
        cpu::attention_fwd(q.data(), k.data(), v.data(), ds, 0.7, o.data(), T, nH, nKV, d);
        return test::weighted_sum(o, g);
      };
      std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
      cpu::attention_bwd(q.data(), k.data(), v.data(), ds, 0.7, g.data(), dq.data(), dk.data(), dv.data(), T, nH,
                         nKV, d);
      test::expect_grad("dq", q, dq, loss);
      test::expect_grad("dk", k, dk, loss);
      test::expect_grad("dv", v, dv, loss);
    }
  }
}

}  // namespace tune
