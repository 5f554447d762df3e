// conv1d_causal on CUDA: one thread per (t, c) output for y and dx (c fastest, so a warp reads contiguous
// channels), and a blocked reduction over time for dw. f32 or bf16 storage, f32 or bf16 weights, fp32 math.
#include "kernel_util.cuh"
#include "ops/conv1d_causal.h"

namespace tune::cuda {

namespace {

constexpr int kMaxTaps = 8;

// y[t, c] = sum_k w[c, k] x[t - K + 1 + k, c] over the positions of t's document.
template <class T, class W>
__global__ void conv1d_fwd_kernel(const T* x, const W* w, const int32_t* doc_start, T* y, int64_t rows, int64_t C,
                                  int K) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < rows * C; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / C, c = e - t * C, s0 = doc_start ? int64_t(doc_start[t]) : 0;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) {
      const int64_t s = t - K + 1 + k;
      if (s >= s0) acc += to_f32(w[c * K + k]) * to_f32(x[s * C + c]);
    }
    y[e] = from_f32<T>(acc);
  }
}

// dx[s, c] = sum over the outputs t = s .. s + K - 1 of s's document of w[c, K - 1 - (t - s)] dy[t, c]. An
// output t reads s exactly when doc_start[t] <= s, i.e. t lies in s's document.
template <class T, class W>
__global__ void conv1d_bwd_dx_kernel(const W* w, const int32_t* doc_start, const T* dy, T* dx, int64_t rows,
                                     int64_t C, int K) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < rows * C; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = e / C, c = e - s * C;
    float acc = 0.0f;
    for (int64_t t = s; t < s + K && t < rows; ++t) {
      if (doc_start && doc_start[t] > s) break;
      acc += to_f32(w[c * K + (K - 1 - (t - s))]) * to_f32(dy[t * C + c]);
    }
    dx[e] = from_f32<T>(acc);
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
  with_float_type(dt, [&](auto xt) {
    with_float_type(wdt, [&](auto wt) {
      using X = decltype(xt);
      using W = decltype(wt);
      conv1d_fwd_kernel<X, W><<<grid_blocks(T * C, 256), 256>>>(static_cast<const X*>(x), static_cast<const W*>(w),
                                                                 doc_start, static_cast<X*>(y), T, C, int(K));
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
      using W = decltype(wt);
      conv1d_bwd_dx_kernel<X, W><<<grid_blocks(T * C, 256), 256>>>(
          static_cast<const W*>(w), doc_start, static_cast<const X*>(dy), static_cast<X*>(dx), T, C, int(K));
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
