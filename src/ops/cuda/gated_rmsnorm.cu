// gated_rmsnorm on CUDA: one warp per (token, value head), the head's dv <= 256 values of o, z (and dy) held
// in registers (see RowLayout), statistics by warp reduction in fp32.
#include "ops/cuda/vec_util.cuh"
#include "ops/gated_rmsnorm.h"

namespace tune::cuda {

namespace {

constexpr int kWarps = 4, kMaxD = 256;

template <class L>
__global__ void __launch_bounds__(kWarps * 32)
    gated_rmsnorm_fwd_kernel(const bf16* __restrict__ o, const bf16* __restrict__ z, int64_t ldz,
                             const float* __restrict__ w, float eps, bf16* __restrict__ y, int64_t rows,
                             int nV, int dv) {
  constexpr int V = L::kV, C = L::kC;
  const int64_t idx = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);  // t nV + h
  if (idx >= rows) return;
  const int64_t t = idx / nV, h = idx % nV;
  float x[C][V], zv[C][V];
  warp_row_load<V, C>(o + idx * dv, dv, x);
  warp_row_load<V, C>(z + t * ldz + h * dv, dv, zv);
  float ss = 0.0f;
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int e = 0; e < V; ++e) ss += x[c][e] * x[c][e];
  const float inv = 1.0f / sqrtf(warp_sum(ss) / float(dv) + eps);
#pragma unroll
  for (int c = 0; c < C; ++c)
    if (row_col(c, V) < dv)
#pragma unroll
      for (int e = 0; e < V; ++e) x[c][e] = w[row_col(c, V) + e] * x[c][e] * inv * silu(zv[c][e]);
  warp_row_store<V, C>(y + idx * dv, dv, x);
}

// n = dy w silu(z): d_o = r n - o r^3 / dv sum(n o), dz = dy w o r silu'(z).
template <class L>
__global__ void __launch_bounds__(kWarps * 32)
    gated_rmsnorm_bwd_kernel(const bf16* __restrict__ o, const bf16* __restrict__ z, int64_t ldz,
                             const float* __restrict__ w, float eps, const bf16* __restrict__ dy,
                             bf16* __restrict__ d_o, bf16* __restrict__ dz, int64_t rows, int nV, int dv) {
  constexpr int V = L::kV, C = L::kC;
  const int64_t idx = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (idx >= rows) return;
  const int64_t t = idx / nV, h = idx % nV;
  float x[C][V], zv[C][V], d[C][V];
  warp_row_load<V, C>(o + idx * dv, dv, x);
  warp_row_load<V, C>(z + t * ldz + h * dv, dv, zv);
  warp_row_load<V, C>(dy + idx * dv, dv, d);
  float ss = 0.0f, dot = 0.0f;
#pragma unroll
  for (int c = 0; c < C; ++c)
    if (row_col(c, V) < dv)
#pragma unroll
      for (int e = 0; e < V; ++e) {
        d[c][e] *= w[row_col(c, V) + e];  // dy w
        ss += x[c][e] * x[c][e];
        dot += d[c][e] * silu(zv[c][e]) * x[c][e];
      }
  const float inv = 1.0f / sqrtf(warp_sum(ss) / float(dv) + eps);
  const float k = inv * inv * inv * warp_sum(dot) / float(dv);
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const float dyw = d[c][e], zz = zv[c][e];
      d[c][e] = inv * dyw * silu(zz) - x[c][e] * k;  // d_o
      zv[c][e] = dyw * x[c][e] * inv * dsilu(zz);    // dz
    }
  warp_row_store<V, C>(d_o + idx * dv, dv, d);
  warp_row_store<V, C>(dz + t * ldz + h * dv, dv, zv);
}

void check(int64_t dv) {
  TUNE_CHECK(dv <= kMaxD) << "gated_rmsnorm: head dim " << dv << " unsupported (at most " << kMaxD << ")";
}

}  // namespace

void gated_rmsnorm_fwd(const void* o, const void* z, int64_t ldz, const float* w, float eps, void* y,
                       int64_t T, int64_t nV, int64_t dv, void* stream) {
  check(dv);
  const int64_t rows = T * nV;
  if (rows == 0) return;
  with_row_layout(dv, {o, z, y}, {ldz, dv}, [&](auto layout) {
    gated_rmsnorm_fwd_kernel<decltype(layout)>
        <<<unsigned((rows + kWarps - 1) / kWarps), kWarps * 32, 0, cudaStream_t(stream)>>>(
            static_cast<const bf16*>(o), static_cast<const bf16*>(z), ldz, w, eps, static_cast<bf16*>(y),
            rows, int(nV), int(dv));
  });
  TUNE_CUDA_LAUNCHED();
}

void gated_rmsnorm_bwd(const void* o, const void* z, int64_t ldz, const float* w, float eps, const void* dy,
                       void* d_o, void* dz, int64_t T, int64_t nV, int64_t dv, void* stream) {
  check(dv);
  const int64_t rows = T * nV;
  if (rows == 0) return;
  with_row_layout(dv, {o, z, dy, d_o, dz}, {ldz, dv}, [&](auto layout) {
    gated_rmsnorm_bwd_kernel<decltype(layout)>
        <<<unsigned((rows + kWarps - 1) / kWarps), kWarps * 32, 0, cudaStream_t(stream)>>>(
            static_cast<const bf16*>(o), static_cast<const bf16*>(z), ldz, w, eps,
            static_cast<const bf16*>(dy), static_cast<bf16*>(d_o), static_cast<bf16*>(dz), rows, int(nV),
            int(dv));
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
