// conv1d_causal on CUDA: a thread per channel walks a tile of positions with a register window for y and dx,
// and a blocked reduction over time for dw. f32 or bf16 storage, f32 or bf16 weights, fp32 math.
#include <type_traits>

#include "kernel_util.cuh"
#include "ops/conv1d_causal.h"

namespace tune::cuda {

namespace {

constexpr int kMaxTaps = 8;

// Forward and dx: a thread owns one channel c over a tile of kTileRows consecutive positions, with the channel's K
// taps and a window of the K - 1 neighbouring inputs in registers, so each element is read once (plus K - 1 halo
// rows per tile); consecutive threads take consecutive channels (coalesced rows). Grid: (channel blocks, tiles).
constexpr int kTileRows = 64, kThreads = 256;

// y[t, c] = sum_k w[c, k] x[t - K + 1 + k, c] over the positions of t's document. h[j] holds x[t - K + 1 + j].
template <class T, class W, int K>
__global__ void conv1d_fwd_kernel(const T* x, const W* w, const int32_t* doc_start, T* y, int64_t rows, int64_t C) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t t0 = int64_t(blockIdx.y) * kTileRows, t1 = min(rows, t0 + kTileRows);
  float wk[K], h[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    wk[k] = to_f32(w[c * K + k]);
    const int64_t s = t0 - K + 1 + k;
    h[k] = k < K - 1 && s >= 0 ? to_f32(x[s * C + c]) : 0.0f;
  }
  for (int64_t t = t0; t < t1; ++t) {
    h[K - 1] = to_f32(x[t * C + c]);
    const int64_t s0 = doc_start ? int64_t(doc_start[t]) : 0;
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (t - K + 1 + k >= s0) acc += wk[k] * h[k];
    y[t * C + c] = from_f32<T>(acc);
#pragma unroll
    for (int k = 0; k + 1 < K; ++k) h[k] = h[k + 1];
  }
}

// dx[s, c] = sum over the outputs t = s .. s + K - 1 of s's document of w[c, K - 1 - (t - s)] dy[t, c]. An
// output t reads s exactly when doc_start[t] <= s, i.e. t lies in s's document. g[j] holds dy[s + j].
template <class T, class W, int K>
__global__ void conv1d_bwd_dx_kernel(const W* w, const int32_t* doc_start, const T* dy, T* dx, int64_t rows,
                                     int64_t C) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t s0 = int64_t(blockIdx.y) * kTileRows, s1 = min(rows, s0 + kTileRows);
  float wk[K], g[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    wk[k] = to_f32(w[c * K + k]);
    g[k] = k >= 1 && s0 + k - 1 < rows ? to_f32(dy[(s0 + k - 1) * C + c]) : 0.0f;  // shifted in below
  }
  for (int64_t s = s0; s < s1; ++s) {
#pragma unroll
    for (int k = 0; k + 1 < K; ++k) g[k] = g[k + 1];
    g[K - 1] = s + K - 1 < rows ? to_f32(dy[(s + K - 1) * C + c]) : 0.0f;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < K; ++j)
      if (s + j < rows && (!doc_start || doc_start[s + j] <= s)) acc += wk[K - 1 - j] * g[j];
    dx[s * C + c] = from_f32<T>(acc);
  }
}

// Calls f(std::integral_constant<int, K>{}) for K in 1 .. kMaxTaps.
template <class F>
void with_taps(int64_t K, F&& f) {
  switch (K) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// dw[c, k] += sum_t dy[t, c] x[t - K + 1 + k, c]. Block (32 channels x 8 row lanes) covers kRowsPerBlock rows;
// partial sums meet in shared memory and one atomicAdd per (c, k) and block goes to dw.
constexpr int kRowsPerBlock = 256;

template <class T>
__global__ void conv1d_bwd_dw_kernel(const T* x, const int32_t* doc_start, const T* dy, float* dw, int64_t rows,
                                     int64_t C, int K) {
  __shared__ float part[8][kMaxTaps][32];
  const int lane = threadIdx.x & 31, row_lane = threadIdx.x >> 5;
  const int64_t c = int64_t(blockIdx.x) * 32 + lane;
  const int64_t t0 = int64_t(blockIdx.y) * kRowsPerBlock, t1 = min(rows, t0 + kRowsPerBlock);
  float acc[kMaxTaps] = {};
  if (c < C) {
    for (int64_t t = t0 + row_lane; t < t1; t += 8) {
      const float g = to_f32(dy[t * C + c]);
      const int64_t s0 = doc_start ? int64_t(doc_start[t]) : 0;
      for (int k = 0; k < K; ++k) {
        const int64_t s = t - K + 1 + k;
        if (s >= s0) acc[k] += g * to_f32(x[s * C + c]);
      }
    }
  }
  for (int k = 0; k < K; ++k) part[row_lane][k][lane] = acc[k];
  __syncthreads();
  if (row_lane == 0 && c < C) {
    for (int k = 0; k < K; ++k) {
      float s = 0.0f;
      for (int r = 0; r < 8; ++r) s += part[r][k][lane];
      atomicAdd(dw + c * K + k, s);
    }
  }
}

}  // namespace

void conv1d_causal_fwd(const void* x, const void* w, const int32_t* doc_start, void* y, int64_t T, int64_t C,
                       int64_t K, DType dt, DType wdt) {
  TUNE_CHECK(K >= 1 && K <= kMaxTaps) << "conv1d_causal: CUDA kernels take 1 to " << kMaxTaps << " taps, not " << K;
  if (T * C == 0) return;
  const dim3 grid(unsigned((C + kThreads - 1) / kThreads), unsigned((T + kTileRows - 1) / kTileRows));
  with_float_type(dt, [&](auto xt) {
    with_float_type(wdt, [&](auto wt) {
      with_taps(K, [&](auto kt) {
        using X = decltype(xt);
        using W = decltype(wt);
        conv1d_fwd_kernel<X, W, decltype(kt)::value><<<grid, kThreads>>>(
            static_cast<const X*>(x), static_cast<const W*>(w), doc_start, static_cast<X*>(y), T, C);
      });
    });
  });
  TUNE_CUDA_LAUNCHED();
}

void conv1d_causal_bwd(const void* x, const void* w, const int32_t* doc_start, const void* dy, void* dx, float* dw,
                       int64_t T, int64_t C, int64_t K, DType dt, DType wdt) {
  TUNE_CHECK(K >= 1 && K <= kMaxTaps) << "conv1d_causal: CUDA kernels take 1 to " << kMaxTaps << " taps, not " << K;
  if (T * C == 0) return;
  with_float_type(dt, [&](auto xt) {
    using X = decltype(xt);
    with_float_type(wdt, [&](auto wt) {
      with_taps(K, [&](auto kt) {
        using W = decltype(wt);
        const dim3 grid(unsigned((C + kThreads - 1) / kThreads), unsigned((T + kTileRows - 1) / kTileRows));
        conv1d_bwd_dx_kernel<X, W, decltype(kt)::value><<<grid, kThreads>>>(
            static_cast<const W*>(w), doc_start, static_cast<const X*>(dy), static_cast<X*>(dx), T, C);
      });
    });
    TUNE_CUDA_LAUNCHED();
    if (dw) {
      const dim3 grid(unsigned((C + 31) / 32), unsigned((T + kRowsPerBlock - 1) / kRowsPerBlock));
      conv1d_bwd_dw_kernel<X><<<grid, 256>>>(static_cast<const X*>(x), doc_start, static_cast<const X*>(dy), dw, T,
                                             C, int(K));
    }
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
