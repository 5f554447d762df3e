// swiglu: argument checks and device dispatch.
#include "ops/swiglu.h"

#include "ops/common.h"

namespace tune {

void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& h) {
  op_check_shape("swiglu", "u", u, g.shape);
  op_check_shape("swiglu", "h", h, g.shape);
  switch (g.device) {
    case Device::CPU:
      op_check_f32("swiglu", "g", g);
      cpu::swiglu_fwd(g.f32(), u.f32(), h.f32(), g.numel());
      return;
    case Device::CUDA: op_unsupported("swiglu", g);
  }
}

}  // namespace tune
