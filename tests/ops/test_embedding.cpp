// embedding_fwd copies rows; an id outside the vocabulary is a user error naming the position.
#include "ops/embedding.h"
#include "op_test_util.h"

namespace tune {

TEST(Embedding, GathersRowsAndRejectsBadIds) {
  Tensor table = test::randn({10, 3}, 15), ids = Tensor::empty(DType::I32, {4}), y = Tensor::empty(DType::F32, {4, 3});
  const int32_t v[4] = {3, 0, 9, 3};
  for (int i = 0; i < 4; ++i) ids.ptr<int32_t>()[i] = v[i];
  embedding_fwd(ids, table, y);
  for (int t = 0; t < 4; ++t)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(y.f32()[t * 3 + c], table.f32()[v[t] * 3 + c]);
  ids.ptr<int32_t>()[2] = 10;
  try {
    embedding_fwd(ids, table, y);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("position 2"), std::string::npos) << e.what();
  }
}

}  // namespace tune
