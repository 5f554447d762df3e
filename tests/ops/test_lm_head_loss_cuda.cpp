// The fused, chunked output head + cross-entropy on CUDA against the CPU reference in double (linear, then
// cross_entropy forward and backward, then linear's input gradient): only the listed rows are computed, chunks
// smaller than, equal to and larger than the row count, dx accumulated onto what it held. Logits are rounded to
// bf16 (2^-8 relative) and dlogits stored in bf16 over them: a loss may be off by the rounding of its target's
// logit and of the logsumexp's weighted mean, twice 2^-8 of the largest |logit|; dx is held to 2e-2 relative L2
// per row set.
#include "cuda_test_util.h"
#include "ops/cross_entropy.h"
#include "ops/linear.h"
#include "ops/lm_head_loss.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(LmHeadLossCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  const int64_t T = 50, H = 96, V = 1001;
  const Tensor x = test::rounded(test::randn({T, H}, 1), DType::BF16);
  const Tensor W = test::rounded(test::randn({V, H}, 2, 0.2f), DType::BF16);
  const Tensor dx0 = test::randn({T, H}, 3, 0.01f);
  std::vector<int32_t> rows, targets;
  for (int32_t t = 0; t < T; ++t)
    if (t % 4 != 1) {
      rows.push_back(t);
      targets.push_back(int32_t((t * 7919) % V));
    }
  const int64_t n = int64_t(rows.size());
  const double scale = 1.0 / double(n);

  // Reference over the selected rows.
  const std::vector<double> xd = test::doubles(x), wd = test::doubles(W);
  std::vector<double> xs(size_t(n * H)), logits(size_t(n * V)), loss(static_cast<size_t>(n)), dlog(size_t(n * V)),
      dxs(size_t(n * H), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < H; ++j) xs[size_t(i * H + j)] = xd[size_t(rows[size_t(i)] * H + j)];
  cpu::linear_fwd<double>(xs.data(), wd.data(), nullptr, logits.data(), n, H, V);
  cpu::cross_entropy_fwd<double>(logits.data(), targets.data(), loss.data(), n, V);
  cpu::cross_entropy_bwd<double>(logits.data(), targets.data(), scale, dlog.data(), n, V);
  cpu::linear_bwd<double>(xs.data(), wd.data(), dlog.data(), dxs.data(), false, nullptr, nullptr, n, H, V);
  double zmax = 0;
  for (double z : logits) zmax = std::max(zmax, std::fabs(z));
  const double loss_tol = 2.0 * zmax / 256.0;
  std::vector<double> want = test::doubles(dx0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < H; ++j) want[size_t(rows[size_t(i)] * H + j)] += dxs[size_t(i * H + j)];

  const Tensor xdv = test::on_cuda(x, DType::BF16), Wd = test::on_cuda(W, DType::BF16);
  const Tensor rowsd = test::ints_on_cuda(rows), tgd = test::ints_on_cuda(targets);
  for (int64_t chunk : {int64_t(7), n, int64_t(64)}) {
    SCOPED_TRACE(testing::Message() << "chunk " << chunk);
    Tensor dx = test::on_cuda(dx0, DType::F32);
    Tensor lossd = test::poisoned({n}, DType::F32);
    const Tensor ws = Tensor::empty(DType::U8, {cuda::lm_head_loss_workspace_bytes(chunk, H, V)}, Device::CUDA);
    cuda::lm_head_loss(xdv.data(), Wd.data(), rowsd.ptr<int32_t>(), tgd.ptr<int32_t>(), n, H, V, float(scale),
                       dx.ptr<float>(), lossd.ptr<float>(), chunk, ws.data());
    test::expect_all_close("loss", lossd, loss, loss_tol, 0.0);
    const std::vector<double> got = test::doubles(dx);
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    EXPECT_LE(std::sqrt(num / den), 2e-2);
  }
}

#else

TEST(LmHeadLossCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
