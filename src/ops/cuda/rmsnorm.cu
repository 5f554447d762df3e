// rmsnorm on CUDA: one block per row, statistics in fp32 by block reduction, then normalize and scale in the
// order of the CPU reference. dw accumulates across rows with fp32 atomics (order-dependent in the last
// bits).
#include "ops/cuda/kernel_util.cuh"
#include "ops/rmsnorm.h"

namespace tune::cuda {

namespace {

template <class W>
__device__ __forceinline__ float norm_scale(const W* w, int64_t c, bool zero_centered) {
  const float wc = to_f32(w[c]);
  return zero_centered ? 1.0f + wc : wc;
}

// y may alias x: each thread reads x[c] before writing y[c], and every read of the first pass precedes the
// barrier inside block_sum.
template <class T, class W>
__global__ void rmsnorm_fwd_kernel(const T* x, const W* w, float eps, bool zero_centered, T* y, int64_t C) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * C;
  T* yr = y + int64_t(blockIdx.x) * C;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(xr[c]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    yr[c] = from_f32<T>((to_f32(xr[c]) * inv) * norm_scale(w, c, zero_centered));
}

// dx = r s dy - x r^3 / C sum(s dy x); dw += dy x r. dx may alias dy (same per-element read-before-write).
template <class T, class W>
__global__ void rmsnorm_bwd_kernel(const T* x, const W* w, const T* dy, float eps, bool zero_centered, T* dx,
                                   float* dw, int64_t C) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  const T *xr = x + off, *dyr = dy + off;
  T* dxr = dx + off;
  float ss = 0.0f, dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(xr[c]);
    ss += v * v;
    dot += to_f32(dyr[c]) * norm_scale(w, c, zero_centered) * v;
  }
  ss = block_sum(ss, scratch);
  dot = block_sum(dot, scratch);
  const float inv = 1.0f / sqrtf(ss / float(C) + eps);
  const float k = inv * inv * inv * dot / float(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(xr[c]), g = to_f32(dyr[c]);
    if (dw) atomicAdd(dw + c, g * v * inv);
    dxr[c] = from_f32<T>(inv * norm_scale(w, c, zero_centered) * g - k * v);
  }
}

}  // namespace

void rmsnorm_fwd(const void* x, const void* w, float eps, bool zero_centered, void* y, int64_t rows,
                 int64_t C, DType dt, DType wdt) {
  if (rows == 0) return;
  with_float_type(dt, [&](auto xt) {
    with_float_type(wdt, [&](auto wt) {
      using T = decltype(xt);
      using W = decltype(wt);
      rmsnorm_fwd_kernel<T, W><<<unsigned(rows), row_threads(C, 512)>>>(
          static_cast<const T*>(x), static_cast<const W*>(w), eps, zero_centered, static_cast<T*>(y), C);
    });
  });
  TUNE_CUDA_LAUNCHED();
}

void rmsnorm_bwd(const void* x, const void* w, const void* dy, float eps, bool zero_centered, void* dx,
                 float* dw, int64_t rows, int64_t C, DType dt, DType wdt) {
  if (rows == 0) return;
  with_float_type(dt, [&](auto xt) {
    with_float_type(wdt, [&](auto wt) {
      using T = decltype(xt);
      using W = decltype(wt);
      rmsnorm_bwd_kernel<T, W><<<unsigned(rows), row_threads(C, 512)>>>(
          static_cast<const T*>(x), static_cast<const W*>(w), static_cast<const T*>(dy), eps, zero_centered,
          static_cast<T*>(dx), dw, C);
    });
  });
  TUNE_CUDA_LAUNCHED();
}

namespace {

__global__ void rmsnorm_bwd_residual_kernel(const bf16* x, const float* w, const bf16* dy, float eps,
                                            bool zero_centered, float* dres, bf16* dres_bf16, int64_t C) {
  __shared__ float scratch[32];
  const int64_t off = int64_t(blockIdx.x) * C;
  float ss = 0.0f, dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = to_f32(x[off + c]);
    ss += v * v;
    dot += norm_scale(w, c, zero_centered) * to_f32(dy[off + c]) * v;
  }
  ss = block_sum(ss, scratch);
  dot = block_sum(dot, scratch);
  const float r = 1.0f / sqrtf(ss / float(C) + eps), k = r * r * r * dot / float(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float g = dres[off + c] + r * norm_scale(w, c, zero_centered) * to_f32(dy[off + c]) - to_f32(x[off + c]) * k;
    dres[off + c] = g;
    dres_bf16[off + c] = from_f32<bf16>(g);
  }
}

}  // namespace

void rmsnorm_bwd_residual(const void* x, const float* w, const void* dy, float eps, bool zero_centered, float* dres,
                          void* dres_bf16, int64_t rows, int64_t C) {
  if (rows == 0) return;
  rmsnorm_bwd_residual_kernel<<<unsigned(rows), row_threads(C, 512)>>>(
      static_cast<const bf16*>(x), w, static_cast<const bf16*>(dy), eps, zero_centered, dres,
      static_cast<bf16*>(dres_bf16), C);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
