// moe_route: argument checks and device dispatch.
#include "ops/moe_route.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

void moe_route_fwd(const TensorView& logits, bool renormalize, const TensorView& experts, const TensorView& weights) {
  const int64_t T = logits.size(0), E = logits.size(1), k = experts.size(1);
  op_check(k >= 1 && k <= E, "moe_route", "k must be in [1, E]");
  op_check(experts.dtype == DType::I32 && experts.shape == Shape({T, k}), "moe_route", "experts (T, k) i32");
  op_check_shape("moe_route", "weights", weights, {T, k});
  switch (logits.device) {
    case Device::CPU:
      op_check_f32("moe_route", "logits", logits);
      cpu::moe_route_fwd(logits.f32(), renormalize, experts.ptr<int32_t>(), weights.f32(), T, E, k);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("moe_route", "logits", logits);
      op_check_cuda("moe_route", "experts", experts, DType::I32);
      op_check_cuda("moe_route", "weights", weights, dt);
      op_check(k <= cuda::kMoeMaxTopK && E <= cuda::kMoeMaxExperts, "moe_route",
               "the CUDA kernel takes k <= 32 and at most 2048 experts");
      cuda::moe_route_fwd(logits.data, renormalize, experts.ptr<int32_t>(), weights.data, T, E, k, dt);
      return;
#else
      op_unsupported("moe_route", logits);
#endif
    }
  }
}

void moe_route_bwd(const TensorView& logits, bool renormalize, const TensorView& experts, const TensorView& dweights,
                   const TensorView& dlogits) {
  const int64_t T = logits.size(0), E = logits.size(1), k = experts.size(1);
  op_check(experts.dtype == DType::I32 && experts.shape == Shape({T, k}), "moe_route_bwd", "experts (T, k) i32");
  op_check_shape("moe_route_bwd", "dweights", dweights, {T, k});
  op_check_shape("moe_route_bwd", "dlogits", dlogits, {T, E});
  switch (logits.device) {
    case Device::CPU:
      op_check_f32("moe_route_bwd", "logits", logits);
      cpu::moe_route_bwd(logits.f32(), renormalize, experts.ptr<int32_t>(), dweights.f32(), dlogits.f32(), T, E, k);
      return;
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = op_cuda_float("moe_route_bwd", "logits", logits);
      op_check_cuda("moe_route_bwd", "experts", experts, DType::I32);
      op_check_cuda("moe_route_bwd", "dweights", dweights, dt);
      op_check_cuda("moe_route_bwd", "dlogits", dlogits, dt);
      op_check(k <= cuda::kMoeMaxTopK && E <= cuda::kMoeMaxExperts, "moe_route_bwd",
               "the CUDA kernel takes k <= 32 and at most 2048 experts");
      cuda::moe_route_bwd(logits.data, renormalize, experts.ptr<int32_t>(), dweights.data, dlogits.data, T, E, k,
                          dt);
      return;
#else
      op_unsupported("moe_route_bwd", logits);
#endif
    }
  }
}

}  // namespace tune
