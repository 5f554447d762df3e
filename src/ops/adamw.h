// Optimizer kernels for the LoRA parameters on CUDA, over flat fp32 buffers (every A and B of the adapter laid
// end to end). The CPU reference is train/optimizer.cpp (torch.optim.AdamW; clip_grad_norm_).
#pragma once

#include <cstdint>

namespace tune::cuda {

// AdamW step `step` (1-based): p = p (1 - lr wd); m, v updated; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
// The gradient is multiplied by grad_scale first (clipping).
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step, float grad_scale);
// Sum of squares of x (n) into *out (device, double; overwritten).
void sum_squares(const float* x, int64_t n, double* out);
// dst (bf16, n) = src (f32).
void cast_f32_to_bf16(const float* src, void* dst, int64_t n);
// x (f32, n) *= s.
void scale_f32(float* x, int64_t n, float s);

}  // namespace tune::cuda
