// embedding: id range check and device dispatch. On the CPU the ids are checked here; on CUDA the kernel checks
// them and reports the first bad position, so both raise the same error.
#include "ops/embedding.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

namespace {
[[noreturn]] void bad_id(int32_t id, int64_t t, int64_t V) {
  throw ConfigError("token id " + std::to_string(id) + " at position " + std::to_string(t) +
                        " is outside the vocabulary [0, " + std::to_string(V) + ")",
                    "the ids come from another tokenizer or model");
}
}  // namespace

void embedding_fwd(const TensorView& ids, const TensorView& table, const TensorView& y) {
  const int64_t T = ids.numel(), V = table.size(0), C = table.size(1);
  op_check(ids.dtype == DType::I32 && ids.device == table.device, "embedding", "ids must be i32 on the table's device");
  op_check_shape("embedding", "y", y, {T, C});
  switch (table.device) {
    case Device::CPU: {
      const int32_t* id = ids.ptr<int32_t>();
      for (int64_t t = 0; t < T; ++t)
        if (id[t] < 0 || id[t] >= V) bad_id(id[t], t, V);
      op_check_f32("embedding", "table", table);
      cpu::embedding_fwd(id, table.f32(), y.f32(), T, C);
      return;
    }
    case Device::CUDA: {
#ifdef TUNE_CUDA
      op_check_cuda("embedding", "ids", ids);
      const DType tdt = op_cuda_float("embedding", "table", table), ydt = op_cuda_float("embedding", "y", y);
      int32_t id = 0;
      const int64_t t = cuda::embedding_fwd(ids.ptr<int32_t>(), table.data, tdt, y.data, ydt, T, V, C, &id);
      if (t >= 0) bad_id(id, t, V);
      return;
#else
      op_unsupported("embedding", table);
#endif
    }
  }
}

}  // namespace tune
