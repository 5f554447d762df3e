// cross_entropy on CUDA: one block per row; log-sum-exp in fp32 with a running max per thread (one pass over
// the row), merged across the block. Targets are checked on the device like embedding ids: the first bad row
// is recorded in a device flag read back after the kernel.
#include <climits>

#include "ops/cross_entropy.h"
#include "ops/cuda/kernel_util.cuh"

namespace tune::cuda {

namespace {

__device__ int g_first_bad_row;

constexpr int kThreads = 256;

// (max, sum of exp(x - max)) pairs, merged so that the result is exact up to rounding.
__device__ __forceinline__ void lse_merge(float& m, float& s, float om, float os) {
  const float mn = fmaxf(m, om);
  if (mn == -INFINITY) return;  // both empty
  s = s * expf(m - mn) + os * expf(om - mn);
  m = mn;
}

template <class T>
__device__ float row_logsumexp(const T* l, int64_t V) {
  __shared__ float sm[32], ss[32];
  float m = -INFINITY, s = 0.0f;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = to_f32(l[v]);
    if (x > m) {
      s = s * expf(m - x) + 1.0f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  for (int o = 16; o > 0; o >>= 1)
    lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = lane < warps ? sm[lane] : -INFINITY;
  s = lane < warps ? ss[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1)
    lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  return m + logf(s);
}

__device__ __forceinline__ bool target_ok(int32_t t, int64_t V) {
  return t == kIgnoreIndex || (t >= 0 && t < V);
}

template <class T>
__global__ void cross_entropy_fwd_kernel(const T* logits, const int32_t* targets, float* loss, int64_t V) {
  const int64_t i = blockIdx.x;
  const int32_t tg = targets[i];
  if (!target_ok(tg, V)) {
    if (threadIdx.x == 0) {
      atomicMin(&g_first_bad_row, int(i));
      loss[i] = 0.0f;
    }
    return;
  }
  if (tg == kIgnoreIndex) {
    if (threadIdx.x == 0) loss[i] = 0.0f;
    return;
  }
  const T* l = logits + i * V;
  const float lse = row_logsumexp(l, V);
  if (threadIdx.x == 0) loss[i] = lse - to_f32(l[tg]);
}

// dlogits = scale (softmax - onehot), rounded once to T.
template <class T>
__global__ void cross_entropy_bwd_kernel(const T* logits, const int32_t* targets, float scale, T* dlogits,
                                         int64_t V) {
  const int64_t i = blockIdx.x;
  const int32_t tg = targets[i];
  T* d = dlogits + i * V;
  if (tg == kIgnoreIndex || !target_ok(tg, V)) {
    if (!target_ok(tg, V) && threadIdx.x == 0) atomicMin(&g_first_bad_row, int(i));
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) d[v] = from_f32<T>(0.0f);
    return;
  }
  const T* l = logits + i * V;
  const float lse = row_logsumexp(l, V);
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    d[v] = from_f32<T>(scale * expf(to_f32(l[v]) - lse) - (v == tg ? scale : 0.0f));
}

int64_t first_bad_row(const int32_t* targets, int32_t* bad_target) {
  int bad = INT_MAX;
  CUDA_CHECK(cudaMemcpyFromSymbol(&bad, g_first_bad_row, sizeof(int)));
  if (bad == INT_MAX) return -1;
  CUDA_CHECK(cudaMemcpy(bad_target, targets + bad, sizeof(int32_t), cudaMemcpyDeviceToHost));
  return bad;
}

void reset_bad_row() {
  const int none = INT_MAX;
  CUDA_CHECK(
      cudaMemcpyToSymbolAsync(g_first_bad_row, &none, sizeof(int), 0, cudaMemcpyHostToDevice, nullptr));
}

}  // namespace

int64_t cross_entropy_fwd(const void* logits, DType dt, const int32_t* targets, float* loss, int64_t N,
                          int64_t V, int32_t* bad_target) {
  if (N == 0) return -1;
  TUNE_CHECK(N <= INT_MAX) << "cross_entropy: " << N << " rows";
  reset_bad_row();
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_fwd_kernel<T><<<unsigned(N), kThreads>>>(static_cast<const T*>(logits), targets, loss, V);
  });
  TUNE_CUDA_LAUNCHED();
  return first_bad_row(targets, bad_target);
}

int64_t cross_entropy_bwd(const void* logits, DType dt, const int32_t* targets, float scale, void* dlogits,
                          int64_t N, int64_t V, int32_t* bad_target) {
  if (N == 0) return -1;
  TUNE_CHECK(N <= INT_MAX) << "cross_entropy_bwd: " << N << " rows";
  reset_bad_row();
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_bwd_kernel<T><<<unsigned(N), kThreads>>>(static_cast<const T*>(logits), targets, scale,
                                                           static_cast<T*>(dlogits), V);
  });
  TUNE_CUDA_LAUNCHED();
  return first_bad_row(targets, bad_target);
}

}  // namespace tune::cuda
