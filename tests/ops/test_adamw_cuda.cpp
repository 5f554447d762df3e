// The optimizer kernels on CUDA against train/optimizer.cpp: AdamW steps with weight decay and a clipping
// factor match the CPU optimizer to fp32 rounding; the sum of squares matches grad_global_norm; the bf16 cast
// rounds to nearest even as the host does.
#include <cstring>

#include "cuda_test_util.h"
#include "ops/adamw.h"
#include "train/optimizer.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(AdamWCuda, MatchesCpuOptimizer) {
  TUNE_REQUIRE_CUDA();
  LoraAdapter a;
  a.config.rank = 2;
  a.layers.resize(1);
  LoraWeights& w = a.layers[0][0];
  const int64_t n = 3001;
  w.A = test::randn({n}, 1);
  w.B = test::randn({7}, 2);
  w.dA = Tensor::zeros(DType::F32, {n});
  w.dB = Tensor::zeros(DType::F32, {7});
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  Optimizer opt(oc, a);
  Tensor p = w.A.to(DType::F32, Device::CUDA);
  Tensor m = Tensor::zeros(DType::F32, {n}, Device::CUDA), v = Tensor::zeros(DType::F32, {n}, Device::CUDA);
  for (int step = 1; step <= 5; ++step) {
    const Tensor g = test::randn({n}, 10 + uint64_t(step), 0.5f);
    const float clip = step == 3 ? 0.25f : 1.0f;
    for (int64_t i = 0; i < n; ++i) w.dA.f32()[i] = g.f32()[i] * clip;
    const double lr = 1e-2 * step;
    opt.step(lr);
    const Tensor gd = g.to(DType::F32, Device::CUDA);
    cuda::adamw_step(p.ptr<float>(), gd.ptr<float>(), m.ptr<float>(), v.ptr<float>(), n, lr, oc.beta1, oc.beta2,
                     oc.eps, oc.weight_decay, step, clip);
  }
  test::expect_all_close("p", p, test::doubles(w.A), 1e-6, 1e-5);
  test::expect_all_close("m", m, test::doubles(opt.m()[0]), 1e-7, 1e-5);
  test::expect_all_close("v", v, test::doubles(opt.v()[0]), 1e-9, 1e-5);

  const Tensor x = test::randn({n}, 99);
  const Tensor xd = x.to(DType::F32, Device::CUDA);
  Tensor out = Tensor::empty(DType::F32, {2}, Device::CUDA);  // 8 bytes for the double
  cuda::sum_squares(xd.ptr<float>(), n, reinterpret_cast<double*>(out.data()));
  double ss = 0, want = 0;
  {
    const Tensor h = out.to(DType::F32, Device::CPU);
    std::memcpy(&ss, h.data(), sizeof ss);
  }
  for (int64_t i = 0; i < n; ++i) want += double(x.f32()[i]) * x.f32()[i];
  EXPECT_NEAR(ss, want, 1e-5 * want);

  Tensor b = Tensor::empty(DType::BF16, {n}, Device::CUDA);
  cuda::cast_f32_to_bf16(xd.ptr<float>(), b.data(), n);
  const Tensor bh = b.to(DType::BF16, Device::CPU), ref = x.to(DType::BF16);
  EXPECT_EQ(std::memcmp(bh.data(), ref.data(), size_t(n) * 2), 0);
}

#else

TEST(AdamWCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
