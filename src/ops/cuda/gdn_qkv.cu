// gdn_qkv on CUDA: one warp per (token, key head). The warp holds the key head's q and k parts (rows of dk <=
// 256 in registers, see RowLayout), loaded together, and serves the r = nV / nK value heads that read them:
// the forward writes each of them, the backward sums their gradients. Those value heads' v parts are one
// contiguous span of r dv columns in conv's row and in v, handled elementwise by the same warp.
#include "ops/cuda/vec_util.cuh"
#include "ops/gdn_qkv.h"

namespace tune::cuda {

namespace {

constexpr int kWarps = 4, kMaxD = 256;

template <class L>
__global__ void __launch_bounds__(kWarps * 32)
    gdn_qkv_fwd_kernel(const bf16* __restrict__ conv, int64_t ld_conv, bf16* __restrict__ q,
                       bf16* __restrict__ k, bf16* __restrict__ v, int64_t T, int nK, int nV, int dk,
                       int dv) {
  constexpr int V = L::kV, C = L::kC;
  const int64_t idx = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (idx >= T * nK) return;
  const int64_t t = idx / nK;
  const int kh = int(idx % nK), r = nV / nK;
  const bf16* row = conv + t * ld_conv;
  float s[2][C][V];  // silu of the q part, then of the k part
  warp_row_load<V, C>(row + int64_t(kh) * dk, dk, s[0]);
  warp_row_load<V, C>(row + int64_t(nK + kh) * dk, dk, s[1]);
  float ss[2] = {0.0f, 0.0f};
#pragma unroll
  for (int p = 0; p < 2; ++p)
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int e = 0; e < V; ++e) {
        s[p][c][e] = silu(s[p][c][e]);  // silu(0) = 0 past the row
        ss[p] += s[p][c][e] * s[p][c][e];
      }
  const float inv[2] = {1.0f / sqrtf(warp_sum(ss[0]) + 1e-6f) * rsqrtf(float(dk)),
                        1.0f / sqrtf(warp_sum(ss[1]) + 1e-6f)};
#pragma unroll
  for (int p = 0; p < 2; ++p)
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int e = 0; e < V; ++e) s[p][c][e] *= inv[p];
  for (int h = kh * r; h < (kh + 1) * r; ++h) {
    warp_row_store<V, C>(q + (t * nV + h) * dk, dk, s[0]);
    warp_row_store<V, C>(k + (t * nV + h) * dk, dk, s[1]);
  }
  const bf16* vs = row + int64_t(2) * nK * dk + int64_t(kh) * r * dv;
  bf16* vd = v + (t * nV + int64_t(kh) * r) * dv;
#pragma unroll 4
  for (int j = (threadIdx.x & 31) * V; j < r * dv; j += 32 * V) {
    float a[V];
    load_bf16<V>(vs + j, a);
#pragma unroll
    for (int e = 0; e < V; ++e) a[e] = silu(a[e]);
    store_bf16<V>(vd + j, a);
  }
}

// Per normalized head x = s r c: ds = c sum_h (r dx_h - s r^3 (dx_h . s)), then dconv = ds silu'(conv).
template <class L>
__global__ void __launch_bounds__(kWarps * 32)
    gdn_qkv_bwd_kernel(const bf16* __restrict__ conv, int64_t ld_conv, const bf16* __restrict__ dq,
                       const bf16* __restrict__ dk, const bf16* __restrict__ dv, bf16* __restrict__ dconv,
                       int64_t ld_dconv, int64_t T, int nK, int nV, int dkh, int dvh) {
  constexpr int V = L::kV, C = L::kC;
  const int64_t idx = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (idx >= T * nK) return;
  const int64_t t = idx / nK;
  const int kh = int(idx % nK), r = nV / nK;
  const bf16* row = conv + t * ld_conv;
  bf16* drow = dconv + t * ld_dconv;
  const int64_t off[2] = {int64_t(kh) * dkh, int64_t(nK + kh) * dkh};  // the q and k parts
  float x[2][C][V], s[2][C][V], acc[2][C][V];
  warp_row_load<V, C>(row + off[0], dkh, x[0]);
  warp_row_load<V, C>(row + off[1], dkh, x[1]);
  float ss[2] = {0.0f, 0.0f};
#pragma unroll
  for (int p = 0; p < 2; ++p)
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int e = 0; e < V; ++e) {
        s[p][c][e] = silu(x[p][c][e]);
        ss[p] += s[p][c][e] * s[p][c][e];
        acc[p][c][e] = 0.0f;
      }
  const float inv[2] = {1.0f / sqrtf(warp_sum(ss[0]) + 1e-6f), 1.0f / sqrtf(warp_sum(ss[1]) + 1e-6f)};
  for (int h = kh * r; h < (kh + 1) * r; ++h) {
    float g[2][C][V];
    warp_row_load<V, C>(dq + (t * nV + h) * dkh, dkh, g[0]);
    warp_row_load<V, C>(dk + (t * nV + h) * dkh, dkh, g[1]);
    float dot[2] = {0.0f, 0.0f};
#pragma unroll
    for (int p = 0; p < 2; ++p)
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int e = 0; e < V; ++e) dot[p] += g[p][c][e] * s[p][c][e];
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      const float k3 = inv[p] * inv[p] * inv[p] * warp_sum(dot[p]);
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[p][c][e] += inv[p] * g[p][c][e] - s[p][c][e] * k3;
    }
  }
  const float sc[2] = {rsqrtf(float(dkh)), 1.0f};
#pragma unroll
  for (int p = 0; p < 2; ++p) {
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int e = 0; e < V; ++e) acc[p][c][e] = sc[p] * acc[p][c][e] * dsilu(x[p][c][e]);
    warp_row_store<V, C>(drow + off[p], dkh, acc[p]);
  }
  const int64_t voff = int64_t(2) * nK * dkh + int64_t(kh) * r * dvh;
  const bf16* gv = dv + (t * nV + int64_t(kh) * r) * dvh;
#pragma unroll 4
  for (int j = (threadIdx.x & 31) * V; j < r * dvh; j += 32 * V) {
    float a[V], g[V];
    load_bf16<V>(row + voff + j, a);
    load_bf16<V>(gv + j, g);
#pragma unroll
    for (int e = 0; e < V; ++e) g[e] *= dsilu(a[e]);
    store_bf16<V>(drow + voff + j, g);
  }
}

void check(int64_t nK, int64_t nV, int64_t dk, int64_t dv) {
  TUNE_CHECK(nK > 0 && nV % nK == 0 && dk <= kMaxD && dv <= kMaxD)
      << "gdn_qkv: heads " << nK << "/" << nV << ", head dims " << dk << "/" << dv << " unsupported";
}

unsigned blocks(int64_t T, int64_t nK) {
  return unsigned((T * nK + kWarps - 1) / kWarps);
}

}  // namespace

void gdn_qkv_fwd(const void* conv, int64_t ld_conv, void* q, void* k, void* v, int64_t T, int64_t nK,
                 int64_t nV, int64_t dk, int64_t dv, void* stream) {
  check(nK, nV, dk, dv);
  if (T * nK == 0) return;
  with_row_layout(dk, {conv, q, k, v}, {ld_conv, dk, dv}, [&](auto layout) {
    gdn_qkv_fwd_kernel<decltype(layout)><<<blocks(T, nK), kWarps * 32, 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(conv), ld_conv, static_cast<bf16*>(q), static_cast<bf16*>(k),
        static_cast<bf16*>(v), T, int(nK), int(nV), int(dk), int(dv));
  });
  TUNE_CUDA_LAUNCHED();
}

void gdn_qkv_bwd(const void* conv, int64_t ld_conv, const void* dq, const void* dk, const void* dv,
                 void* dconv, int64_t ld_dconv, int64_t T, int64_t nK, int64_t nV, int64_t dk_, int64_t dv_,
                 void* stream) {
  check(nK, nV, dk_, dv_);
  if (T * nK == 0) return;
  with_row_layout(dk_, {conv, dq, dk, dv, dconv}, {ld_conv, ld_dconv, dk_, dv_}, [&](auto layout) {
    gdn_qkv_bwd_kernel<decltype(layout)><<<blocks(T, nK), kWarps * 32, 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(conv), ld_conv, static_cast<const bf16*>(dq), static_cast<const bf16*>(dk),
        static_cast<const bf16*>(dv), static_cast<bf16*>(dconv), ld_dconv, T, int(nK), int(nV), int(dk_),
        int(dv_));
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
