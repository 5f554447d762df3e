// swiglu: argument checks and device dispatch.
#include "ops/swiglu.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& h) {
  op_check_shape("swiglu", "u", u, g.shape);
  op_check_shape("swiglu", "h", h, g.shape);
  switch (g.device) {
    case Device::CPU:
      op_check_f32("swiglu", "g", g);
      cpu::swiglu_fwd(g.f32(), u.f32(), h.f32(), g.numel());
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("swiglu", "g", g);
      op_check_cuda("swiglu", "u", u, dt);
      op_check_cuda("swiglu", "h", h, dt);
      cuda::swiglu_fwd(g.data, u.data, h.data, g.numel(), dt);
      return;
#else
      op_unsupported("swiglu", g);
#endif
    }
  }
}

void swiglu_bwd(const TensorView& g, const TensorView& u, const TensorView& dh, const TensorView& dg,
                const TensorView& du) {
  for (const TensorView* t : {&u, &dh, &dg, &du}) op_check_shape("swiglu_bwd", "arg", *t, g.shape);
  switch (g.device) {
    case Device::CPU:
      op_check_f32("swiglu_bwd", "g", g);
      cpu::swiglu_bwd(g.f32(), u.f32(), dh.f32(), dg.f32(), du.f32(), g.numel());
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("swiglu_bwd", "g", g);
      for (const TensorView* t : {&u, &dh, &dg, &du}) op_check_cuda("swiglu_bwd", "arg", *t, dt);
      cuda::swiglu_bwd(g.data, u.data, dh.data, dg.data, du.data, g.numel(), dt);
      return;
#else
      op_unsupported("swiglu_bwd", g);
#endif
    }
  }
}

}  // namespace tune
