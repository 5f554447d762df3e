// embedding: id range check and device dispatch.
#include "ops/embedding.h"

#include "ops/common.h"

namespace tune {

void embedding_fwd(const TensorView& ids, const TensorView& table, const TensorView& y) {
  const int64_t T = ids.numel(), V = table.size(0), C = table.size(1);
  op_check(ids.dtype == DType::I32 && ids.device == Device::CPU, "embedding", "ids must be i32 on the CPU");
  op_check_shape("embedding", "y", y, {T, C});
  const int32_t* id = ids.ptr<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    if (id[t] < 0 || id[t] >= V) {
      throw ConfigError("token id " + std::to_string(id[t]) + " at position " + std::to_string(t) +
                            " is outside the vocabulary [0, " + std::to_string(V) + ")",
                        "the ids come from another tokenizer or model");
    }
  }
  switch (table.device) {
    case Device::CPU:
      op_check_f32("embedding", "table", table);
      cpu::embedding_fwd(id, table.f32(), y.f32(), T, C);
      return;
    case Device::CUDA: op_unsupported("embedding", table);
  }
}

}  // namespace tune
