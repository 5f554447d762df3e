// rope on CUDA: one thread per (position, frequency) computes the angle once and rotates that pair in every
// head. inv_freq is formed on the host exactly as the CPU reference does (fp32 pow) and passed by value, so
// both backends rotate by the same fp32 angle; only sin/cos differ, by an ulp or two.
#include <cmath>

#include "ops/cuda/kernel_util.cuh"
#include "ops/rope.h"

namespace tune::cuda {

namespace {

struct InvFreq {
  float v[kRopeMaxRotaryDim / 2];
};

template <class T>
__global__ void rope_kernel(T* x, const int32_t* pos, InvFreq f, int64_t T_, int64_t heads, int64_t d,
                            int64_t half, float sign) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < T_ * half;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / half, i = idx % half;
    const float a = float(pos[t]) * f.v[i];
    float sn, cs;
    sincosf(a, &sn, &cs);
    sn *= sign;
    T* row = x + t * heads * d;
    for (int64_t h = 0; h < heads; ++h, row += d) {
      const float p = to_f32(row[i]), q = to_f32(row[i + half]);
      row[i] = from_f32<T>(p * cs - q * sn);
      row[i + half] = from_f32<T>(q * cs + p * sn);
    }
  }
}

}  // namespace

void rope(void* x, const int32_t* pos, int64_t T, int64_t heads, int64_t d, int64_t rotary_dim, double theta,
          int sign, DType dt) {
  TUNE_CHECK(rotary_dim <= kRopeMaxRotaryDim)
      << "rope: rotary_dim " << rotary_dim << " over " << kRopeMaxRotaryDim;
  const int64_t half = rotary_dim / 2;
  if (T == 0 || half == 0) return;
  InvFreq f{};
  for (int64_t i = 0; i < half; ++i) f.v[i] = 1.0f / std::pow(float(theta), float(2 * i) / float(rotary_dim));
  constexpr int kThreads = 256;
  with_float_type(dt, [&](auto tag) {
    using T_ = decltype(tag);
    rope_kernel<T_><<<grid_blocks(T * half, kThreads), kThreads>>>(static_cast<T_*>(x), pos, f, T, heads, d,
                                                                   half, float(sign));
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
