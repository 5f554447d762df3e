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

void conv1d_causal_bwd(const TensorView& x, const TensorView& w, const TensorView* doc_start,
                       const TensorView& dy, const TensorView& dx, const TensorView* dw) {
  op_check(x.shape.ndim == 2 && w.shape.ndim == 2, "conv1d_causal_bwd", "x must be (T, C) and w (C, K)");
  const int64_t T = x.size(0), C = x.size(1), K = w.size(1);
  op_check_shape("conv1d_causal_bwd", "w", w, {C, K});
  op_check_shape("conv1d_causal_bwd", "dy", dy, {T, C});
  op_check_shape("conv1d_causal_bwd", "dx", dx, {T, C});
  if (dw) op_check_shape("conv1d_causal_bwd", "dw", *dw, {C, K});
  op_check(dx.data != dy.data, "conv1d_causal_bwd", "dx must not alias dy");
  if (doc_start) {
    op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T && doc_start->device == x.device,
             "conv1d_causal_bwd", "doc_start (T) i32 on x's device");
  }
  switch (x.device) {
    case Device::CPU:
      for (const TensorView* t : {&x, &w, &dy, &dx}) op_check_f32("conv1d_causal_bwd", "x/w/dy/dx", *t);
      if (dw) op_check_f32("conv1d_causal_bwd", "dw", *dw);
      cpu::conv1d_causal_bwd(x.f32(), w.f32(), doc_start ? doc_start->ptr<int32_t>() : nullptr, dy.f32(),
                             dx.f32(), dw ? dw->f32() : nullptr, T, C, K);
      return;
    case Device::CUDA:
      op_unsupported("conv1d_causal_bwd", x);
  }
}

}  // namespace tune
