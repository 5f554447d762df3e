// linear: argument checks and device dispatch.
#include "ops/linear.h"

#include "ops/common.h"

namespace tune {

void linear_fwd(const TensorView& x, const TensorView& w, const TensorView* b, const TensorView& y) {
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  op_check_shape("linear", "w", w, {N, K});
  op_check_shape("linear", "y", y, {T, N});
  if (b) op_check_shape("linear", "b", *b, {N});
  switch (x.device) {
    case Device::CPU:
      op_check_f32("linear", "x", x);
      op_check_f32("linear", "w", w);
      cpu::linear_fwd(x.f32(), w.f32(), b ? b->f32() : nullptr, y.f32(), T, K, N);
      return;
    case Device::CUDA: op_unsupported("linear", x);
  }
}

}  // namespace tune
