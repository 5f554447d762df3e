// Cross-entropy of logits against target ids; a target of -100 marks a row that is not trained.
// fwd: logits (N, V), targets (N) i32 -> loss (N) = logsumexp(logits) - logits[target] (0 where ignored)
// bwd: dlogits (N, V) = scale * (softmax(logits) - onehot(target)) for trained rows, 0 otherwise (overwritten);
//      scale is d(total loss)/d(row loss), e.g. 1 / (trained tokens of the optimizer batch)
#pragma once

#include "core/tensor.h"

namespace tune {

constexpr int32_t kIgnoreIndex = -100;

void cross_entropy_fwd(const TensorView& logits, const TensorView& targets, const TensorView& loss);
void cross_entropy_bwd(const TensorView& logits, const TensorView& targets, float scale, const TensorView& dlogits);

namespace cpu {
template <class R>
void cross_entropy_fwd(const R* logits, const int32_t* targets, R* loss, int64_t N, int64_t V);
template <class R>
void cross_entropy_bwd(const R* logits, const int32_t* targets, R scale, R* dlogits, int64_t N, int64_t V);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA): device pointers; logits and dlogits of the element type `dt`
// (f32 or bf16), loss f32, targets i32. Targets are checked on the device: each returns the first row whose target
// is neither -100 nor in [0, V) (the target in *bad_target), or -1. Synchronize with the device.
namespace cuda {
int64_t cross_entropy_fwd(const void* logits, DType dt, const int32_t* targets, float* loss, int64_t N, int64_t V,
                          int32_t* bad_target);
int64_t cross_entropy_bwd(const void* logits, DType dt, const int32_t* targets, float scale, void* dlogits, int64_t N,
                          int64_t V, int32_t* bad_target);
}  // namespace cuda

}  // namespace tune
