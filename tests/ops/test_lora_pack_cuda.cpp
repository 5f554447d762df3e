// lora_pack on CUDA: B rows from the fp32 masters land scaled and rounded to bf16 at their columns of a strided
// weight, A rows unscaled at its extra rows; every other element of the weight is left as it was.
#include "cuda_test_util.h"
#include "ops/lora_pack.h"
#ifdef TUNE_CUDA
#include "core/cuda_check.h"
#endif

namespace tune {

#ifdef TUNE_CUDA
// lora_pack of the host masters through segs (copied to the device), none over max_elems elements.
static void pack(const Tensor& masters, const std::vector<cuda::LoraPackSeg>& segs, int64_t max_elems) {
  const size_t bytes = segs.size() * sizeof(cuda::LoraPackSeg);
  const Tensor segs_dev = Tensor::empty(DType::U8, {int64_t(bytes)}, Device::CUDA);
  CUDA_CHECK(cudaMemcpy(segs_dev.data(), segs.data(), bytes, cudaMemcpyHostToDevice));
  const Tensor md = test::on_cuda(masters, DType::F32);
  cuda::lora_pack(md.ptr<float>(), static_cast<const cuda::LoraPackSeg*>(segs_dev.data()), int64_t(segs.size()),
                  max_elems);
  CUDA_CHECK(cudaDeviceSynchronize());
}

TEST(LoraPackCuda, WritesScaledBRowsARowsAndNothingElse) {
  TUNE_REQUIRE_CUDA();
  // W (N 40, K 24) with kx = 3 r (r 4): target 0 covers rows [0, 16) at column 24, target 1 rows [16, 24) at
  // column 28 (a split target: its second part rows [32, 40) from B row 8 on), target 2 no rows (not trained).
  // Rows [40, 48) hold the two targets' A's (2 r, K), from masters[64 r].
  const int64_t N = 40, K = 24, r = 4, ld = K + 3 * r, nA = 2 * r;
  const float s = 0.5f;
  const Tensor masters = test::randn({64 * r + nA * K}, 1);
  const Tensor w0 = test::rounded(test::randn({N + nA, ld}, 2), DType::BF16);
  Tensor w = test::on_cuda(w0, DType::BF16);
  auto at = [&](int64_t row, int64_t col) { return static_cast<char*>(w.data()) + (row * ld + col) * 2; };
  const std::vector<cuda::LoraPackSeg> segs = {{0, at(0, K), ld, 16, r, s},
                                                {20 * r, at(16, K + r), ld, 8, r, s},
                                                {28 * r, at(32, K + r), ld, 8, r, s},
                                                {64 * r, at(N, 0), ld, nA, K, 1.0f}};
  pack(masters, segs, nA * K);
  std::vector<double> want = test::doubles(w0);
  const std::vector<double> m = test::doubles(masters);
  auto put = [&](int64_t src, int64_t row0, int64_t col, int64_t rows, int64_t width, float scale) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t k = 0; k < width; ++k)
        want[size_t((row0 + i) * ld + col + k)] =
            double(bf16_to_f32(f32_to_bf16(scale * float(m[size_t(src + i * width + k)]))));
  };
  put(0, 0, K, 16, r, s);
  put(20 * r, 16, K + r, 8, r, s);
  put(28 * r, 32, K + r, 8, r, s);
  put(64 * r, N, 0, nA, K, 1.0f);
  test::expect_all_close("w", w, want, 0.0, 0.0);
}

// A segment wider than one block's share (5000 elements) beside a short one: every element of the long one, the
// last block's partial share included.
TEST(LoraPackCuda, LongSegmentSpansBlocks) {
  TUNE_REQUIRE_CUDA();
  const int64_t rows = 5, K = 1000, kx = 30, ld = K + kx;
  const Tensor masters = test::randn({rows * ld}, 3);
  const Tensor w0 = test::rounded(test::randn({rows, ld}, 4), DType::BF16);
  Tensor w = test::on_cuda(w0, DType::BF16);
  const std::vector<cuda::LoraPackSeg> segs = {{0, w.data(), ld, rows, K, 0.25f},
                                                {rows * K, static_cast<char*>(w.data()) + K * 2, ld, rows, kx, 1.0f}};
  pack(masters, segs, rows * K);
  const std::vector<double> m = test::doubles(masters);
  std::vector<double> want(size_t(rows * ld));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < ld; ++k) {
      const float v = k < K ? 0.25f * float(m[size_t(i * K + k)]) : float(m[size_t(rows * K + i * kx + k - K)]);
      want[size_t(i * ld + k)] = double(bf16_to_f32(f32_to_bf16(v)));
    }
  test::expect_all_close("w", w, want, 0.0, 0.0);
}
#else
TEST(LoraPackCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }
#endif

}  // namespace tune
