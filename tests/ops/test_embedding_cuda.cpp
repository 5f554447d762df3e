// embedding on CUDA: rows copied exactly (f32, bf16, and bf16 table into f32 rows), and an id outside the
// vocabulary is the same user error as on the CPU, naming the first bad position.
#include "core/rng.h"
#include "cuda_test_util.h"
#include "ops/embedding.h"

namespace tune {

TEST(EmbeddingCuda, GathersRowsExactly) {
  TUNE_REQUIRE_CUDA();
  const int64_t V = 50, C = 37, T = 77;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  Rng rng(3);
  for (int32_t& id : ids) id = int32_t(rng.below(uint64_t(V)));
  ids[0] = 0;
  ids[1] = int32_t(V - 1);
  for (auto [tdt, ydt] : {std::pair<DType, DType>{DType::F32, DType::F32},
                          {DType::BF16, DType::BF16},
                          {DType::BF16, DType::F32}}) {
    SCOPED_TRACE(testing::Message() << dtype_name(tdt) << " -> " << dtype_name(ydt));
    const Tensor table = test::rounded(test::randn({V, C}, 4), tdt);
    std::vector<double> ref;
    for (int32_t id : ids)
      for (int64_t c = 0; c < C; ++c) ref.push_back(table.f32()[id * C + c]);
    Tensor y = test::poisoned({T, C}, ydt);
    embedding_fwd(test::ints_on_cuda(ids), test::on_cuda(table, tdt), y);
    test::expect_all_close("y", y, ref, 0.0, 0.0);  // a copy (bf16 -> f32 widening is exact)
  }
}

TEST(EmbeddingCuda, BadIdNamesThePosition) {
  TUNE_REQUIRE_CUDA();
  const Tensor table = test::on_cuda(test::randn({10, 3}, 5), DType::F32);
  Tensor y = test::poisoned({12, 3}, DType::F32);
  std::vector<int32_t> ids(12, 1);
  ids[9] = 10;
  ids[4] = -1;
  try {
    embedding_fwd(test::ints_on_cuda(ids), table, y);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("token id -1 at position 4"), std::string::npos) << e.what();
  }
}

}  // namespace tune
