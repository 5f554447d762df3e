// cross_entropy: target range checks and device dispatch. On the CPU the targets are checked here; on CUDA the
// kernels check them and report the first bad row, so both raise the same error.
#include "ops/cross_entropy.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

namespace {
[[noreturn]] void bad_label(int32_t label, int64_t i, int64_t V) {
  throw ConfigError("label " + std::to_string(label) + " at position " + std::to_string(i) +
                        " is outside the vocabulary [0, " + std::to_string(V) + ")",
                    "labels are token ids, or -100 for positions that are not trained");
}

void check(const char* op, const TensorView& logits, const TensorView& targets) {
  const int64_t N = logits.size(0), V = logits.size(1);
  op_check(targets.dtype == DType::I32 && targets.numel() == N && targets.device == logits.device, op,
           "targets (N) i32 on the logits' device");
  if (logits.device != Device::CPU) return;  // the CUDA kernels check the targets
  const int32_t* t = targets.ptr<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (t[i] != kIgnoreIndex && (t[i] < 0 || t[i] >= V)) bad_label(t[i], i, V);
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
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("cross_entropy", "logits", logits);
      op_check_cuda("cross_entropy", "targets", targets);
      op_check_cuda("cross_entropy", "loss", loss, DType::F32);
      int32_t label = 0;
      const int64_t i = cuda::cross_entropy_fwd(logits.data, dt, targets.ptr<int32_t>(), loss.ptr<float>(),
                                                logits.size(0), logits.size(1), &label);
      if (i >= 0) bad_label(label, i, logits.size(1));
      return;
#else
      op_unsupported("cross_entropy", logits);
#endif
    }
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
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("cross_entropy_bwd", "logits", logits);
      op_check_cuda("cross_entropy_bwd", "targets", targets);
      op_check_cuda("cross_entropy_bwd", "dlogits", dlogits, dt);
      int32_t label = 0;
      const int64_t i = cuda::cross_entropy_bwd(logits.data, dt, targets.ptr<int32_t>(), scale, dlogits.data,
                                                logits.size(0), logits.size(1), &label);
      if (i >= 0) bad_label(label, i, logits.size(1));
      return;
#else
      op_unsupported("cross_entropy_bwd", logits);
#endif
    }
  }
}

}  // namespace tune
