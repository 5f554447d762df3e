// swiglu on CUDA: elementwise, fp32 math, grid-stride loops.
#include "ops/cuda/kernel_util.cuh"
#include "ops/swiglu.h"

namespace tune::cuda {

namespace {

// h may alias g (each element is read before it is written).
template <class T>
__global__ void swiglu_fwd_kernel(const T* g, const T* u, T* h, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = to_f32(g[i]);
    h[i] = from_f32<T>(gi / (1.0f + expf(-gi)) * to_f32(u[i]));
  }
}

// dg, du may alias dh (all three inputs are read before either output is written).
template <class T>
__global__ void swiglu_bwd_kernel(const T* g, const T* u, const T* dh, T* dg, T* du, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = to_f32(g[i]), ui = to_f32(u[i]), d = to_f32(dh[i]);
    const float s = 1.0f / (1.0f + expf(-gi));
    du[i] = from_f32<T>(d * gi * s);
    dg[i] = from_f32<T>(d * ui * s * (1.0f + gi * (1.0f - s)));
  }
}

constexpr int kThreads = 256;

}  // namespace

void swiglu_fwd(const void* g, const void* u, void* h, int64_t n, DType dt) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    swiglu_fwd_kernel<T><<<grid_blocks(n, kThreads), kThreads>>>(
        static_cast<const T*>(g), static_cast<const T*>(u), static_cast<T*>(h), n);
  });
  TUNE_CUDA_LAUNCHED();
}

void swiglu_bwd(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n, DType dt) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    swiglu_bwd_kernel<T><<<grid_blocks(n, kThreads), kThreads>>>(
        static_cast<const T*>(g), static_cast<const T*>(u), static_cast<const T*>(dh), static_cast<T*>(dg),
        static_cast<T*>(du), n);
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
