// cross_entropy: target range checks and device dispatch.
#include "ops/cross_entropy.h"

#include "ops/common.h"

namespace tune {

namespace {
void check(const char* op, const TensorView& logits, const TensorView& targets) {
  const int64_t N = logits.size(0), V = logits.size(1);
  op_check(targets.dtype == DType::I32 && targets.numel() == N && targets.device == Device::CPU, op,
           "targets (N) i32 on the CPU");
  const int32_t* t = targets.ptr<int32_t>();
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] != kIgnoreIndex && (t[i] < 0 || t[i] >= V)) {
      throw ConfigError("label " + std::to_string(t[i]) + " at position " + std::to_string(i) +
                            " is outside the vocabulary [0, " + std::to_string(V) + ")",
                        "labels are token ids, or -100 for positions that are not trained");
    }
  }
  op_check_f32(op, "logits", logits);
}
}  // namespace

void cross_entropy_fwd(const TensorView& logits, const TensorView& targets, const TensorView& loss) {
  check("cross_entropy", logits, targets);
  op_check_shape("cross_entropy", "loss", loss, {logits.size(0)});
  switch (logits.device) {
    case Device::CPU:
      cpu::cross_entropy_fwd(logits.f32(), targets.ptr<int32_t>(), loss.f32(), logits.size(0), logits.size(1));
      return;
    case Device::CUDA: op_unsupported("cross_entropy", logits);
  }
}

void cross_entropy_bwd(const TensorView& logits, const TensorView& targets, float scale, const TensorView& dlogits) {
  check("cross_entropy_bwd", logits, targets);
  op_check_shape("cross_entropy_bwd", "dlogits", dlogits, logits.shape);
  switch (logits.device) {
    case Device::CPU:
      cpu::cross_entropy_bwd(logits.f32(), targets.ptr<int32_t>(), scale, dlogits.f32(), logits.size(0),
                             logits.size(1));
      return;
    case Device::CUDA: op_unsupported("cross_entropy_bwd", logits);
  }
}

}  // namespace tune
