// cross_entropy on CUDA against the CPU reference in double: vocabularies from 9 to Qwen's 151936, ignored
// rows, f32 and bf16 logits, and a bad label as the same user error as on the CPU.
#include "core/rng.h"
#include "cuda_test_util.h"
#include "ops/cross_entropy.h"

namespace tune {

TEST(CrossEntropyCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  const float scale = 0.25f;
  for (auto [N, V] : {std::pair<int64_t, int64_t>{5, 9}, {37, 1001}, {4, 50257}, {3, 151936}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(testing::Message() << N << "x" << V << " " << dtype_name(dt));
      const Tensor logits = test::rounded(test::randn({N, V}, 7, 3.0f), dt);
      std::vector<int32_t> targets(static_cast<size_t>(N));
      Rng rng(8);
      for (int32_t& t : targets) t = int32_t(rng.below(uint64_t(V)));
      targets[1] = kIgnoreIndex;
      targets[0] = int32_t(V - 1);
      const std::vector<double> ld = test::doubles(logits);
      std::vector<double> loss_ref(static_cast<size_t>(N)), dl_ref(size_t(N * V));
      cpu::cross_entropy_fwd(ld.data(), targets.data(), loss_ref.data(), N, V);
      cpu::cross_entropy_bwd(ld.data(), targets.data(), double(scale), dl_ref.data(), N, V);

      // The loss is f32 for either logits dtype: an fp32 log-sum-exp over V terms (~1e-6 relative to ~log V).
      // dlogits: ~1e-6 relative in f32 (shared by the row through lse); bf16 adds one rounding.
      const Tensor lc = test::on_cuda(logits, dt), tc = test::ints_on_cuda(targets);
      Tensor loss = test::poisoned({N}, DType::F32);
      cross_entropy_fwd(lc, tc, loss);
      test::expect_all_close("loss", loss, loss_ref, 1e-5, 1e-5);
      EXPECT_EQ(test::doubles(loss)[1], 0.0) << "ignored row";
      Tensor dl = test::poisoned({N, V}, dt);
      cross_entropy_bwd(lc, tc, scale, dl);
      test::expect_all_close("dlogits", dl, dl_ref, dt == DType::F32 ? 1e-9 : 1e-7,
                             dt == DType::F32 ? 1e-5 : test::kBf16Rtol);
      const std::vector<double> dlv = test::doubles(dl);
      for (int64_t v = 0; v < V; ++v) ASSERT_EQ(dlv[size_t(V + v)], 0.0) << "ignored row, column " << v;
    }
  }
}

TEST(CrossEntropyCuda, BadLabelNamesThePosition) {
  TUNE_REQUIRE_CUDA();
  const Tensor logits = test::on_cuda(test::randn({4, 6}, 9), DType::F32);
  Tensor loss = test::poisoned({4}, DType::F32), dl = test::poisoned({4, 6}, DType::F32);
  const Tensor targets = test::ints_on_cuda({1, kIgnoreIndex, 6, -3});
  for (int bwd : {0, 1}) {
    try {
      if (bwd) {
        cross_entropy_bwd(logits, targets, 1.0f, dl);
      } else {
        cross_entropy_fwd(logits, targets, loss);
      }
      FAIL() << "expected an error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("label 6 at position 2"), std::string::npos) << e.what();
    }
  }
}

}  // namespace tune
