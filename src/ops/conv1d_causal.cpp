// conv1d_causal: argument checks and device dispatch (CPU only for now).
#include "ops/conv1d_causal.h"

#include "ops/common.h"

namespace tune {

void conv1d_causal_fwd(const TensorView& x, const TensorView& w, const TensorView* doc_start, const TensorView& y) {
  op_check(x.shape.ndim == 2 && w.shape.ndim == 2, "conv1d_causal", "x must be (T, C) and w (C, K)");
  const int64_t T = x.size(0), C = x.size(1), K = w.size(1);
  op_check_shape("conv1d_causal", "w", w, {C, K});
  op_check_shape("conv1d_causal", "y", y, {T, C});
  op_check(K >= 1, "conv1d_causal", "the kernel needs at least one tap");
  op_check(x.data != y.data, "conv1d_causal", "y must not alias x");
  if (doc_start) {
    op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T && doc_start->device == x.device,
             "conv1d_causal", "doc_start (T) i32 on x's device");
  }
  switch (x.device) {
    case Device::CPU:
      op_check_f32("conv1d_causal", "x", x);
      op_check_f32("conv1d_causal", "w", w);
      op_check_f32("conv1d_causal", "y", y);
      cpu::conv1d_causal_fwd(x.f32(), w.f32(), doc_start ? doc_start->ptr<int32_t>() : nullptr, y.f32(), T, C, K);
      return;
    case Device::CUDA:
      op_unsupported("conv1d_causal", x);
  }
}

}  // namespace tune
