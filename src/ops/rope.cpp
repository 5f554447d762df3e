// rope: argument checks and device dispatch.
#include "ops/rope.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

namespace {
void rope_dispatch(const char* op, const TensorView& x, const TensorView& pos, int64_t rotary_dim, double theta,
                   int sign) {
  const int64_t T = x.size(0), heads = x.size(1), d = x.size(2);
  op_check(pos.dtype == DType::I32 && pos.numel() == T, op, "pos must be i32 with one entry per row");
  op_check(rotary_dim > 0 && rotary_dim <= d && rotary_dim % 2 == 0, op, "rotary_dim must be even and <= d");
  switch (x.device) {
    case Device::CPU:
      op_check_f32(op, "x", x);
      cpu::rope(x.f32(), pos.ptr<int32_t>(), T, heads, d, rotary_dim, theta, sign);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float(op, "x", x);
      op_check_cuda(op, "pos", pos, DType::I32);
      op_check(rotary_dim <= cuda::kRopeMaxRotaryDim, op, "rotary_dim over the CUDA kernel's limit");
      cuda::rope(x.data, pos.ptr<int32_t>(), T, heads, d, rotary_dim, theta, sign, dt);
      return;
#else
      op_unsupported(op, x);
#endif
    }
  }
}
}  // namespace

void rope_fwd(const TensorView& x, const TensorView& pos, int64_t rotary_dim, double theta) {
  rope_dispatch("rope", x, pos, rotary_dim, theta, +1);
}

void rope_bwd(const TensorView& dx, const TensorView& pos, int64_t rotary_dim, double theta) {
  rope_dispatch("rope_bwd", dx, pos, rotary_dim, theta, -1);
}

}  // namespace tune
