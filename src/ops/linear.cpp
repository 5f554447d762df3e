// linear: argument checks and device dispatch.
#include "ops/linear.h"

#include "ops/common.h"
#include "ops/cuda/check.h"
#include "quant/dot.h"

namespace tune {

void linear_fwd(const TensorView& x, const TensorView& w, const TensorView* b, const TensorView& y) {
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  op_check_shape("linear", "w", w, {N, K});
  op_check_shape("linear", "y", y, {T, N});
  if (b) op_check_shape("linear", "b", *b, {N});
  switch (x.device) {
    case Device::CPU:
      op_check_f32("linear", "x", x);
      if (w.dtype != DType::F32 && vec_dot_supported(w.dtype)) {
        op_check(w.is_contiguous(), "linear", "quantized w must be contiguous");
        op_check_f32("linear", "y", y);
        if (b) op_check_f32("linear", "b", *b);
        cpu::linear_quant_fwd(x.f32(), w.data, w.dtype, b ? b->f32() : nullptr, y.f32(), T, K, N);
        return;
      }
      op_check_f32("linear", "w", w);
      cpu::linear_fwd(x.f32(), w.f32(), b ? b->f32() : nullptr, y.f32(), T, K, N);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("linear", "x", x);
      op_check_cuda("linear", "w", w, dt);
      op_check_cuda("linear", "y", y, dt);
      if (b) op_check_cuda("linear", "b", *b, dt);
      cuda::linear_fwd(x.data, w.data, b ? b->data : nullptr, y.data, T, K, N, dt);
      return;
#else
      op_unsupported("linear", x);
#endif
    }
  }
}

void linear_bwd(const TensorView& x, const TensorView& w, const TensorView& dy, const TensorView* dx,
                bool accumulate_dx, const TensorView* dw, const TensorView* db) {
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  op_check_shape("linear_bwd", "w", w, {N, K});
  op_check_shape("linear_bwd", "dy", dy, {T, N});
  if (dx) op_check_shape("linear_bwd", "dx", *dx, {T, K});
  if (dw) op_check_shape("linear_bwd", "dw", *dw, {N, K});
  if (db) op_check_shape("linear_bwd", "db", *db, {N});
  switch (x.device) {
    case Device::CPU:
      op_check_f32("linear_bwd", "x", x);
      cpu::linear_bwd(x.f32(), w.f32(), dy.f32(), dx ? dx->f32() : nullptr, accumulate_dx,
                      dw ? dw->f32() : nullptr, db ? db->f32() : nullptr, T, K, N);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("linear_bwd", "x", x);
      op_check_cuda("linear_bwd", "w", w, dt);
      op_check_cuda("linear_bwd", "dy", dy, dt);
      if (dx) op_check_cuda("linear_bwd", "dx", *dx, dt);
      // Parameter gradients may be kept in f32 whatever the activations are.
      if (dw) op_check(op_cuda_float("linear_bwd", "dw", *dw) == dt || dw->dtype == DType::F32, "linear_bwd",
                       "dw must be f32 or the dtype of x");
      if (db) op_check(op_cuda_float("linear_bwd", "db", *db) == dt || db->dtype == DType::F32, "linear_bwd",
                       "db must be f32 or the dtype of x");
      cuda::linear_bwd(x.data, w.data, dy.data, dx ? dx->data : nullptr, accumulate_dx, dw ? dw->data : nullptr,
                       dw ? dw->dtype : dt, db ? db->data : nullptr, db ? db->dtype : dt, T, K, N, dt);
      return;
#else
      op_unsupported("linear_bwd", x);
#endif
    }
  }
}

}  // namespace tune
