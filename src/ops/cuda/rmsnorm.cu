// rmsnorm on CUDA: one block per row, statistics in fp32 by block reduction, then normalize and scale in the
// order of the CPU reference. dw accumulates across rows with fp32 atomics (order-dependent in the last
// bits).
#include <type_traits>

#include "ops/cuda/kernel_util.cuh"
#include "ops/rmsnorm.h"

namespace tune::cuda {

namespace {

template <class W>
__device__ __forceinline__ float norm_scale(const W* w, int64_t c, bool zero_centered) {
  const float wc = to_f32(w[c]);
  return zero_centered ? 1.0f + wc : wc;
}

// y may alias x (when ldy == C): each thread reads x[c] before writing y[c], and every read of the first pass
// precedes the barrier inside block_sum.
template <class T, class W>
__global__ void rmsnorm_fwd_kernel(const T* x, const W* w, float eps, bool zero_centered, T* y, int64_t C,
                                   int64_t ldy) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * C;
  T* yr = y + int64_t(blockIdx.x) * ldy;
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

// The training path's layout (bf16 rows, f32 weights, C % 8 == 0): one warp per row, 16-byte loads and
// stores, lane l taking the row's 16-byte chunks j = l, l + 32, ... (C / 8 of them). NV > 0: a row of at most
// 32 NV chunks is held in registers, all of a lane's loads issued before the warp's reduction (one load in
// flight at a time, as in the loop, leaves the kernels latency-bound). NV 0: a loop over the row, which reads
// it twice (the second time from L1/L2). Same arithmetic order as the kernels above, for every NV.
__device__ __forceinline__ void load_w8(const float* __restrict__ w, int j, bool zc, float* s) {
  const float4 a = reinterpret_cast<const float4*>(w)[2 * j], b = reinterpret_cast<const float4*>(w)[2 * j + 1];
  s[0] = a.x, s[1] = a.y, s[2] = a.z, s[3] = a.w, s[4] = b.x, s[5] = b.y, s[6] = b.z, s[7] = b.w;
  if (zc)
#pragma unroll
    for (int i = 0; i < 8; ++i) s[i] += 1.0f;
}

// Calls f(std::integral_constant<int, NV>{}) with the first of kNV (ascending) whose 32 NV chunks hold a row
// of C / 8, or with NV 0 when none does. Hidden sizes 896, 1024, 2048, 2560, 4096, 5120 need NV 4, 4, 8, 10,
// 16, 20.
template <int... kNV, class F>
void with_lane_chunks(int64_t C, F&& f) {
  const int64_t nv = (C / 8 + 31) / 32;
  if (!((nv <= kNV && (f(std::integral_constant<int, kNV>{}), true)) || ...))
    f(std::integral_constant<int, 0>{});
}

// At C 2560 the forward takes 64 registers: 4 blocks an SM, the 4096 rows of a step all resident at once.
constexpr int kRowWarps = 8;

__device__ __forceinline__ void sum_sq(const uint4& u, float& ss) {
  float v[8];
  unpack8(u, v);
#pragma unroll
  for (int i = 0; i < 8; ++i) ss += v[i] * v[i];
}

__device__ __forceinline__ uint4 fwd_chunk(const uint4& u, const float* __restrict__ w, int j, bool zc,
                                           float inv) {
  float v[8], s[8];
  unpack8(u, v);
  load_w8(w, j, zc, s);
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = (v[i] * inv) * s[i];
  return pack8(v);
}

template <int NV>
__global__ void __launch_bounds__(kRowWarps * 32)
    rmsnorm_fwd_rows_kernel(const bf16* x, const float* __restrict__ w, float eps, bool zc, bf16* y,
                            int64_t rows, int64_t C, int64_t ldy) {
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31, n8 = int(C / 8);
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * C);
  uint4* yr = reinterpret_cast<uint4*>(y + row * ldy);
  float ss = 0.0f;
  if constexpr (NV > 0) {
    uint4 u[NV];
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) u[i] = xr[lane + 32 * i];
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) sum_sq(u[i], ss);
    const float inv = 1.0f / sqrtf(warp_sum(ss) / float(C) + eps);
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) yr[lane + 32 * i] = fwd_chunk(u[i], w, lane + 32 * i, zc, inv);
  } else {
    for (int j = lane; j < n8; j += 32) sum_sq(xr[j], ss);
    const float inv = 1.0f / sqrtf(warp_sum(ss) / float(C) + eps);
    for (int j = lane; j < n8; j += 32) yr[j] = fwd_chunk(xr[j], w, j, zc, inv);
  }
}

}  // namespace

void rmsnorm_fwd(const void* x, const void* w, float eps, bool zero_centered, void* y, int64_t rows,
                 int64_t C, DType dt, DType wdt, int64_t ldy) {
  if (rows == 0) return;
  if (ldy == 0) ldy = C;
  with_float_type(dt, [&](auto xt) {
    with_float_type(wdt, [&](auto wt) {
      using T = decltype(xt);
      using W = decltype(wt);
      if constexpr (std::is_same_v<T, bf16> && std::is_same_v<W, float>) {
        if (C % 8 == 0 && ldy % 8 == 0) {
          with_lane_chunks<4, 8, 10, 16, 20>(C, [&](auto nv) {
            rmsnorm_fwd_rows_kernel<nv><<<unsigned((rows + kRowWarps - 1) / kRowWarps), kRowWarps * 32>>>(
                static_cast<const bf16*>(x), static_cast<const float*>(w), eps, zero_centered,
                static_cast<bf16*>(y), rows, C, ldy);
          });
          TUNE_CUDA_LAUNCHED();
          return;
        }
      }
      rmsnorm_fwd_kernel<T, W><<<unsigned(rows), row_threads(C, 512)>>>(
          static_cast<const T*>(x), static_cast<const W*>(w), eps, zero_centered, static_cast<T*>(y), C, ldy);
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

__device__ __forceinline__ void bwd_sums(const uint4& xu, const uint4& gu, const float* __restrict__ w, int j,
                                         bool zc, float& ss, float& dot) {
  float v[8], g[8], s[8];
  unpack8(xu, v);
  unpack8(gu, g);
  load_w8(w, j, zc, s);
#pragma unroll
  for (int i = 0; i < 8; ++i) ss += v[i] * v[i], dot += s[i] * g[i] * v[i];
}

// dres[j] += r s g - x k, then its bf16 copy.
__device__ __forceinline__ void bwd_out(const uint4& xu, const uint4& gu, const float* __restrict__ w, int j,
                                        bool zc, float r, float k, float4* dr, uint4* dbr) {
  float v[8], g[8], s[8];
  unpack8(xu, v);
  unpack8(gu, g);
  load_w8(w, j, zc, s);
  const float4 a = dr[2 * j], b = dr[2 * j + 1];
  float o[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) o[i] += r * s[i] * g[i] - v[i] * k;
  dr[2 * j] = make_float4(o[0], o[1], o[2], o[3]);
  dr[2 * j + 1] = make_float4(o[4], o[5], o[6], o[7]);
  dbr[j] = pack8(o);
}

// NV > 0 holds x and dy (NV 10: 127 registers, 2 blocks an SM); dres is read once, after the reduction.
template <int NV>
__global__ void __launch_bounds__(kRowWarps * 32)
    rmsnorm_bwd_residual_rows_kernel(const bf16* x, const float* __restrict__ w, const bf16* dy, float eps,
                                     bool zc, float* dres, bf16* dres_bf16, int64_t rows, int64_t C,
                                     int64_t ldb) {
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31, n8 = int(C / 8);
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * C);
  const uint4* dyr = reinterpret_cast<const uint4*>(dy + row * C);
  float4* dr = reinterpret_cast<float4*>(dres + row * C);
  uint4* dbr = reinterpret_cast<uint4*>(dres_bf16 + row * ldb);
  float ss = 0.0f, dot = 0.0f;
  if constexpr (NV > 0) {
    uint4 xu[NV], gu[NV];
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) xu[i] = xr[lane + 32 * i], gu[i] = dyr[lane + 32 * i];
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) bwd_sums(xu[i], gu[i], w, lane + 32 * i, zc, ss, dot);
    ss = warp_sum(ss);
    dot = warp_sum(dot);
    const float r = 1.0f / sqrtf(ss / float(C) + eps), k = r * r * r * dot / float(C);
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < n8) bwd_out(xu[i], gu[i], w, lane + 32 * i, zc, r, k, dr, dbr);
  } else {
    for (int j = lane; j < n8; j += 32) bwd_sums(xr[j], dyr[j], w, j, zc, ss, dot);
    ss = warp_sum(ss);
    dot = warp_sum(dot);
    const float r = 1.0f / sqrtf(ss / float(C) + eps), k = r * r * r * dot / float(C);
    for (int j = lane; j < n8; j += 32) bwd_out(xr[j], dyr[j], w, j, zc, r, k, dr, dbr);
  }
}

__global__ void rmsnorm_bwd_residual_kernel(const bf16* x, const float* w, const bf16* dy, float eps,
                                            bool zero_centered, float* dres, bf16* dres_bf16, int64_t C,
                                            int64_t ldb) {
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
    dres_bf16[int64_t(blockIdx.x) * ldb + c] = from_f32<bf16>(g);
  }
}

}  // namespace

void rmsnorm_bwd_residual(const void* x, const float* w, const void* dy, float eps, bool zero_centered, float* dres,
                          void* dres_bf16, int64_t rows, int64_t C, int64_t ldb) {
  if (rows == 0) return;
  if (ldb == 0) ldb = C;
  if (C % 8 == 0 && ldb % 8 == 0) {
    const auto launch = [&](auto nv) {
      rmsnorm_bwd_residual_rows_kernel<nv><<<unsigned((rows + kRowWarps - 1) / kRowWarps), kRowWarps * 32>>>(
          static_cast<const bf16*>(x), w, static_cast<const bf16*>(dy), eps, zero_centered, dres,
          static_cast<bf16*>(dres_bf16), rows, C, ldb);
    };
    // Rows of at most 1024 take the loop (42 registers: a step's 4096 rows all resident at once), as do rows
    // over 2560 (x and dy held there would leave few warps an SM).
    if (C <= 1024)
      launch(std::integral_constant<int, 0>{});
    else
      with_lane_chunks<8, 10>(C, launch);
    TUNE_CUDA_LAUNCHED();
    return;
  }
  rmsnorm_bwd_residual_kernel<<<unsigned(rows), row_threads(C, 512)>>>(
      static_cast<const bf16*>(x), w, static_cast<const bf16*>(dy), eps, zero_centered, dres,
      static_cast<bf16*>(dres_bf16), C, ldb);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
