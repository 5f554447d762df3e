// fill on CUDA: grid-stride loops; the normal draw for index i hashes (seed, i) with splitmix64.
#include "ops/cuda/kernel_util.cuh"
#include "ops/fill.h"

namespace tune::cuda {

namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <class T>
__global__ void fill_normal_kernel(T* x, int64_t n, uint64_t seed, float mean, float std) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = splitmix64(seed ^ splitmix64(uint64_t(i)));
    const float u1 = (float(uint32_t(h >> 40)) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
    const float u2 = float(uint32_t(h & 0xffffffu)) * (1.0f / 16777216.0f);
    x[i] = from_f32<T>(mean + std * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

template <class T>
__global__ void fill_constant_kernel(T* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = from_f32<T>(value);
}

}  // namespace

void fill_normal(void* x, DType dt, int64_t n, uint64_t seed, float mean, float std) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    fill_normal_kernel<T><<<grid_blocks(n, 256), 256>>>(static_cast<T*>(x), n, seed, mean, std);
  });
  TUNE_CUDA_LAUNCHED();
}

void fill_constant(void* x, DType dt, int64_t n, float value) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    fill_constant_kernel<T><<<grid_blocks(n, 256), 256>>>(static_cast<T*>(x), n, value);
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
