// conv1d_causal_fwd: matches straightforward double loops (zero padding before the start), and a packed row of
// documents (doc_start) equals running each document on its own.
#include "ops/conv1d_causal.h"
#include "op_test_util.h"

namespace tune {

namespace {
// y[t, c] = sum_k w[c, k] x[t - K + 1 + k, c], reading zero before position s0 (in double).
std::vector<double> reference(const Tensor& x, const Tensor& w, int64_t s0, int64_t s1) {
  const int64_t C = x.size(1), K = w.size(1);
  std::vector<double> y(size_t((s1 - s0) * C));
  for (int64_t t = s0; t < s1; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t s = t - K + 1 + k;
        if (s >= s0) acc += double(w.f32()[c * K + k]) * x.f32()[s * C + c];
      }
      y[size_t((t - s0) * C + c)] = acc;
    }
  return y;
}
}  // namespace

TEST(Conv1dCausal, MatchesLoops) {
  for (int64_t K : {int64_t(1), int64_t(4), int64_t(7)}) {
    const int64_t T = 11, C = 5;
    Tensor x = test::randn({T, C}, 1), w = test::randn({C, K}, 2), y = Tensor::empty(DType::F32, {T, C});
    conv1d_causal_fwd(x, w, nullptr, y);
    test::expect_close(y.f32(), reference(x, w, 0, T), 1e-6, 1e-6);
  }
}

TEST(Conv1dCausal, TapOrderIsOldestFirst) {
  // One channel, K = 3, w = [1, 10, 100]: y[t] = x[t-2] + 10 x[t-1] + 100 x[t].
  Tensor x = Tensor::empty(DType::F32, {4, 1}), w = Tensor::empty(DType::F32, {1, 3}),
         y = Tensor::empty(DType::F32, {4, 1});
  for (int i = 0; i < 4; ++i) x.f32()[i] = float(i + 1);
  w.f32()[0] = 1, w.f32()[1] = 10, w.f32()[2] = 100;
  conv1d_causal_fwd(x, w, nullptr, y);
  const float want[4] = {100, 210, 321, 432};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y.f32()[i], want[i]) << i;
}

TEST(Conv1dCausal, DocStartResetsTheWindow) {
  const int64_t C = 6, K = 4;
  const int64_t bounds[] = {0, 2, 9, 10, 17};  // documents of 2, 7, 1 and 7 tokens
  const int64_t T = bounds[4];
  Tensor x = test::randn({T, C}, 3), w = test::randn({C, K}, 4), y = Tensor::empty(DType::F32, {T, C});
  Tensor docs = Tensor::empty(DType::I32, {T});
  for (int d = 0; d < 4; ++d)
    for (int64_t t = bounds[d]; t < bounds[d + 1]; ++t) docs.ptr<int32_t>()[t] = int32_t(bounds[d]);
  conv1d_causal_fwd(x, w, &docs.view(), y);
  for (int d = 0; d < 4; ++d) {
    const int64_t s0 = bounds[d], s1 = bounds[d + 1];
    test::expect_close(y.f32() + s0 * C, reference(x, w, s0, s1), 1e-6, 1e-6);
    // The same document alone.
    Tensor xd = x.slice_rows(s0, s1).clone(), yd = Tensor::empty(DType::F32, {s1 - s0, C});
    conv1d_causal_fwd(xd, w, nullptr, yd);
    for (int64_t i = 0; i < (s1 - s0) * C; ++i) EXPECT_EQ(yd.f32()[i], y.f32()[s0 * C + i]) << "doc " << d;
  }
}

TEST(Conv1dCausal, DoubleInstantiation) {
  const int64_t T = 5, C = 2, K = 3;
  std::vector<double> x(size_t(T * C)), w(size_t(C * K)), y(size_t(T * C));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1 * double(i) - 0.3;
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5 - 0.2 * double(i);
  cpu::conv1d_causal_fwd(x.data(), w.data(), nullptr, y.data(), T, C, K);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k)
        if (t - K + 1 + k >= 0) want += w[size_t(c * K + k)] * x[size_t((t - K + 1 + k) * C + c)];
      EXPECT_DOUBLE_EQ(y[size_t(t * C + c)], want);
    }
}

}  // namespace tune

#include "grad_check.h"

namespace tune {

TEST(Conv1dCausal, GradCheck) {
  const int64_t T = 9, C = 3, K = 4;
  for (bool docs : {false, true}) {
    const std::vector<int32_t> ds = {0, 0, 0, 3, 3, 3, 3, 3, 8};
    auto x = test::randv(T * C, 41), w = test::randv(C * K, 42, 0.5), g = test::randv(T * C, 43);
    const int32_t* d = docs ? ds.data() : nullptr;
    auto loss = [&] {
      std::vector<double> y(T * C);
      cpu::conv1d_causal_fwd(x.data(), w.data(), d, y.data(), T, C, K);
      return test::weighted_sum(y, g);
    };
    std::vector<double> dx(T * C), dw(C * K, 0.0);
    cpu::conv1d_causal_bwd(x.data(), w.data(), d, g.data(), dx.data(), dw.data(), T, C, K);
    test::expect_grad("dx", x, dx, loss);
    test::expect_grad("dw", w, dw, loss);
    // dw accumulates; dx is optional-free of dw.
    std::vector<double> dx2(T * C), dw2(C * K, 1.0);
    cpu::conv1d_causal_bwd(x.data(), w.data(), d, g.data(), dx2.data(), dw2.data(), T, C, K);
    for (int64_t i = 0; i < C * K; ++i) EXPECT_NEAR(dw2[size_t(i)], dw[size_t(i)] + 1.0, 1e-12);
    cpu::conv1d_causal_bwd<double>(x.data(), w.data(), d, g.data(), dx2.data(), nullptr, T, C, K);
    for (int64_t i = 0; i < T * C; ++i) EXPECT_EQ(dx2[size_t(i)], dx[size_t(i)]);
  }
}

TEST(Conv1dCausal, BwdF32MatchesDouble) {
  const int64_t T = 7, C = 4, K = 3;
  Tensor x = test::randn({T, C}, 51), w = test::randn({C, K}, 52), dy = test::randn({T, C}, 53);
  Tensor dx = Tensor::empty(DType::F32, {T, C}), dw = Tensor::zeros(DType::F32, {C, K});
  conv1d_causal_bwd(x, w, nullptr, dy, dx, &dw.view());
  std::vector<double> xd(x.f32(), x.f32() + T * C), wd(w.f32(), w.f32() + C * K),
      gd(dy.f32(), dy.f32() + T * C);
  std::vector<double> dxd(T * C), dwd(C * K, 0.0);
  cpu::conv1d_causal_bwd(xd.data(), wd.data(), nullptr, gd.data(), dxd.data(), dwd.data(), T, C, K);
  test::expect_close(dx.f32(), dxd, 1e-6, 1e-6);
  test::expect_close(dw.f32(), dwd, 1e-6, 1e-6);
}

}  // namespace tune
