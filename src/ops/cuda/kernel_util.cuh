// Device helpers shared by the op kernels: f32/bf16 loads and stores (math is always fp32; eight bf16 packed
// in 16 bytes), warp and block reductions, the launch check, and a switch from a runtime DType to a C++
// element type. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/dtype.h"

// Checks the launch just made (configuration errors); faults inside the kernel surface at the next
// synchronizing call.
#define TUNE_CUDA_LAUNCHED() CUDA_CHECK(cudaGetLastError())

namespace tune::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(bf16 x) {
  return __bfloat162float(x);
}

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16(x);  // round to nearest even, as the host's f32_to_bf16
}

// Eight bf16 (one 16-byte access) to and from floats, element i of the row at v[i]. A bf16 is the high half of
// its float: a shift or a mask a value, and a held chunk stays in four 32-bit registers, not eight halves.
__device__ __forceinline__ void unpack8(const uint4& u, float* v) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 pack8(const float* v) {
  uint4 u;
  __nv_bfloat162* p = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  return u;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum (max) that every thread receives. blockDim.x is a multiple of 32; `scratch` holds 32 floats
// and may be reused by the next call (the leading barrier waits for the previous readers). The barriers also
// make shared-memory writes made before the call visible to all threads after it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? scratch[lane] : -INFINITY);
}

// Threads for a block that walks a row of n elements: n rounded up to a warp, at most `cap`.
inline int row_threads(int64_t n, int cap) {
  const int64_t t = (n + 31) / 32 * 32;
  return int(t < 32 ? 32 : t > cap ? cap : t);
}

// The current device's multiprocessors (132 if the runtime cannot say), read once.
inline int multiprocessor_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      sms = 132;
    return sms;
  }();
  return n;
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_blocks(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

// Calls f(T{}) with T = float for f32 and __nv_bfloat16 for bf16.
template <class F>
void with_float_type(DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::BF16:
      f(bf16{});
      return;
    default:
      TUNE_CHECK(false) << "no CUDA kernel for " << dtype_name(dt);
  }
}

}  // namespace tune::cuda
