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

namespace {

// One thread per pair of adjacent elements of a row (I even: bf16x2 loads and stores); rows along grid y.
__global__ void swiglu_fused_fwd_kernel(const bf16* gu, bf16* h, int64_t T_, int64_t I) {
  const int64_t j = 2 * (blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (j >= I) return;
  for (int64_t t = blockIdx.y; t < T_; t += gridDim.y) {
    const float2 g = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gu + t * 2 * I + j));
    const float2 u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gu + t * 2 * I + I + j));
    *reinterpret_cast<__nv_bfloat162*>(h + t * I + j) =
        __floats2bfloat162_rn(g.x / (1.0f + expf(-g.x)) * u.x, g.y / (1.0f + expf(-g.y)) * u.y);
  }
}

__global__ void swiglu_fused_bwd_kernel(const bf16* gu, const bf16* dh, bf16* dgu, int64_t T_, int64_t I) {
  const int64_t j = 2 * (blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (j >= I) return;
  for (int64_t t = blockIdx.y; t < T_; t += gridDim.y) {
    const float2 g = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gu + t * 2 * I + j));
    const float2 u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gu + t * 2 * I + I + j));
    const float2 d = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dh + t * I + j));
    const float sx = 1.0f / (1.0f + expf(-g.x)), sy = 1.0f / (1.0f + expf(-g.y));
    *reinterpret_cast<__nv_bfloat162*>(dgu + t * 2 * I + j) = __floats2bfloat162_rn(
        d.x * u.x * sx * (1.0f + g.x * (1.0f - sx)), d.y * u.y * sy * (1.0f + g.y * (1.0f - sy)));
    *reinterpret_cast<__nv_bfloat162*>(dgu + t * 2 * I + I + j) =
        __floats2bfloat162_rn(d.x * g.x * sx, d.y * g.y * sy);
  }
}

dim3 fused_grid(int64_t T_, int64_t I) {
  return dim3(unsigned((I / 2 + 127) / 128), unsigned(T_ < 65535 ? T_ : 65535));
}

}  // namespace

void swiglu_fused_fwd(const void* gu, void* h, int64_t T, int64_t I) {
  if (T * I == 0) return;
  TUNE_CHECK(I % 2 == 0) << "swiglu_fused_fwd: odd width " << I;
  swiglu_fused_fwd_kernel<<<fused_grid(T, I), 128>>>(static_cast<const bf16*>(gu), static_cast<bf16*>(h), T, I);
  TUNE_CUDA_LAUNCHED();
}

void swiglu_fused_bwd(const void* gu, const void* dh, void* dgu, int64_t T, int64_t I) {
  if (T * I == 0) return;
  TUNE_CHECK(I % 2 == 0) << "swiglu_fused_bwd: odd width " << I;
  swiglu_fused_bwd_kernel<<<fused_grid(T, I), 128>>>(static_cast<const bf16*>(gu), static_cast<const bf16*>(dh),
                                                     static_cast<bf16*>(dgu), T, I);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
