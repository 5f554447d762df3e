// AdamW, the gradient norm and casts on CUDA: elementwise grid-stride loops; the moments' arithmetic mirrors
// the CPU optimizer's (double for the bias corrections, computed on the host).
#include <cmath>

#include "ops/adamw.h"
#include "ops/cuda/kernel_util.cuh"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float b1, float one_b1, float b2,
                             float one_b2, float eps, float decay, float step_size, float bc2_sqrt, float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * gs;
    const float pi = p[i] * decay;
    const float mi = b1 * m[i] + one_b1 * gi;
    const float vi = b2 * v[i] + one_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
  }
}

__global__ void sum_squares_kernel(const float* x, int64_t n, double* out) {
  __shared__ float scratch[32];
  float s = 0.0f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) atomicAdd(out, double(s));
}

__global__ void cast_kernel(const float* src, bf16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<bf16>(src[i]);
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step, float grad_scale) {
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  // 1 - beta in double, as the CPU optimizer: 1 - 0.999f in float is off by 1.3e-5 relative.
  adamw_kernel<<<grid_blocks(n, kThreads), kThreads>>>(p, g, m, v, n, float(beta1), float(1.0 - beta1), float(beta2),
                                                       float(1.0 - beta2), float(eps), float(1.0 - lr * weight_decay),
                                                       float(lr / bc1), float(std::sqrt(bc2)), grad_scale);
  TUNE_CUDA_LAUNCHED();
}

void sum_squares(const float* x, int64_t n, double* out) {
  CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double)));
  if (n == 0) return;
  sum_squares_kernel<<<std::min<unsigned>(grid_blocks(n, kThreads), 1024), kThreads>>>(x, n, out);
  TUNE_CUDA_LAUNCHED();
}

void cast_f32_to_bf16(const float* src, void* dst, int64_t n) {
  if (n == 0) return;
  cast_kernel<<<grid_blocks(n, kThreads), kThreads>>>(src, static_cast<bf16*>(dst), n);
  TUNE_CUDA_LAUNCHED();
}

void scale_f32(float* x, int64_t n, float s) {
  if (n == 0) return;
  scale_kernel<<<grid_blocks(n, kThreads), kThreads>>>(x, n, s);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
