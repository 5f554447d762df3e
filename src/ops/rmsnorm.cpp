// rmsnorm: argument checks and device dispatch.
#include "ops/rmsnorm.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, bool zero_centered, const TensorView& y) {
  const int64_t C = w.size(0), R = x.numel() / C;
  op_check(x.numel() % C == 0, "rmsnorm", "x size is not a multiple of the weight size");
  op_check(y.numel() == x.numel(), "rmsnorm", "y size differs from x");
  switch (x.device) {
    case Device::CPU:
      op_check_f32("rmsnorm", "x", x);
      cpu::rmsnorm_fwd(x.f32(), w.f32(), eps, zero_centered, y.f32(), R, C);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("rmsnorm", "x", x);
      op_check_cuda("rmsnorm", "y", y, dt);
      cuda::rmsnorm_fwd(x.data, w.data, eps, zero_centered, y.data, R, C, dt, op_cuda_float("rmsnorm", "w", w));
      return;
#else
      op_unsupported("rmsnorm", x);
#endif
    }
  }
}

void rmsnorm_bwd(const TensorView& x, const TensorView& w, const TensorView& dy, float eps, bool zero_centered,
                 const TensorView& dx, const TensorView* dw) {
  const int64_t C = w.size(0), R = x.numel() / C;
  op_check(x.numel() % C == 0 && dy.numel() == x.numel() && dx.numel() == x.numel(), "rmsnorm_bwd", "sizes differ");
  if (dw) op_check_shape("rmsnorm_bwd", "dw", *dw, w.shape);
  switch (x.device) {
    case Device::CPU:
      op_check_f32("rmsnorm_bwd", "x", x);
      cpu::rmsnorm_bwd(x.f32(), w.f32(), dy.f32(), eps, zero_centered, dx.f32(), dw ? dw->f32() : nullptr, R, C);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("rmsnorm_bwd", "x", x);
      op_check_cuda("rmsnorm_bwd", "dy", dy, dt);
      op_check_cuda("rmsnorm_bwd", "dx", dx, dt);
      if (dw) op_check_cuda("rmsnorm_bwd", "dw", *dw, DType::F32);
      cuda::rmsnorm_bwd(x.data, w.data, dy.data, eps, zero_centered, dx.data, dw ? dw->ptr<float>() : nullptr, R, C,
                        dt, op_cuda_float("rmsnorm_bwd", "w", w));
      return;
#else
      op_unsupported("rmsnorm_bwd", x);
#endif
    }
  }
}

}  // namespace tune
