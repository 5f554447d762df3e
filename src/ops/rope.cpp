// rope: argument checks and device dispatch.
#include "ops/rope.h"

#include "ops/common.h"

namespace tune {

void rope_fwd(const TensorView& x, const TensorView& pos, int64_t rotary_dim, double theta) {
  const int64_t T = x.size(0), heads = x.size(1), d = x.size(2);
  op_check(pos.dtype == DType::I32 && pos.numel() == T, "rope", "pos must be i32 with one entry per row");
  op_check(rotary_dim > 0 && rotary_dim <= d && rotary_dim % 2 == 0, "rope", "rotary_dim must be even and <= d");
  switch (x.device) {
    case Device::CPU:
      op_check_f32("rope", "x", x);
      cpu::rope_fwd(x.f32(), pos.ptr<int32_t>(), T, heads, d, rotary_dim, theta);
      return;
    case Device::CUDA: op_unsupported("rope", x);
  }
}

}  // namespace tune
