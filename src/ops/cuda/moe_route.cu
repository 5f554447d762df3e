// moe_route on CUDA: one warp per token. Softmax statistics by warp reduction in fp32; the top k by k rounds
// of a warp argmax over the logits (the softmax is monotone, so the order is the same), ties to the lower
// index. Lane j keeps the j-th choice, so k <= 32; each lane owns experts lane, lane+32, ... and marks taken
// ones in a 64-bit mask, so E <= 2048.
#include "ops/cuda/kernel_util.cuh"
#include "ops/moe_route.h"

namespace tune::cuda {

namespace {

constexpr int kWarps = 4;

// Row max and sum of exp(l - max), in every lane.
template <class T>
__device__ __forceinline__ void softmax_stats(const T* l, int E, float& mx, float& sum) {
  const int lane = threadIdx.x & 31;
  mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, to_f32(l[e]));
  mx = warp_max(mx);
  sum = 0.0f;
  for (int e = lane; e < E; e += 32) sum += expf(to_f32(l[e]) - mx);
  sum = warp_sum(sum);
}

template <class T>
__global__ void moe_route_fwd_kernel(const T* logits, bool renormalize, int32_t* experts, T* weights,
                                     int64_t rows, int E, int k) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps leave together
  const T* l = logits + r * E;
  float mx, sum;
  softmax_stats(l, E, mx, sum);
  uint64_t taken = 0;
  float total = 0.0f, mine = 0.0f;
  for (int j = 0; j < k; ++j) {
    float bv = -INFINITY;
    int be = E;  // none
    for (int e = lane, b = 0; e < E; e += 32, ++b) {
      if ((taken >> b) & 1u) continue;
      const float v = to_f32(l[e]);
      if (be == E || v > bv) {
        bv = v;
        be = e;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (oe != E && (be == E || ov > bv || (ov == bv && oe < be))) {
        bv = ov;
        be = oe;
      }
    }
    if ((be & 31) == lane) taken |= uint64_t(1) << (be >> 5);
    const float p = expf(bv - mx) / sum;
    total += p;
    if (lane == j) {
      mine = p;
      experts[r * k + j] = be;
    }
  }
  if (lane < k) weights[r * k + lane] = from_f32<T>(renormalize ? mine / total : mine);
}

// Renormalized: w_j = softmax over the kept logits, dl_{e_j} = w_j (dw_j - sum_i dw_i w_i), 0 elsewhere.
// Otherwise: w_j = p_{e_j}, dl_m = [m = e_j] dw_j p_m - p_m sum_j dw_j p_{e_j}.
template <class T>
__global__ void moe_route_bwd_kernel(const T* logits, bool renormalize, const int32_t* experts,
                                     const T* dweights, T* dlogits, int64_t rows, int E, int k) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const T* l = logits + r * E;
  float mx, sum;
  softmax_stats(l, E, mx, sum);
  int ex = -1;
  float dw = 0.0f, p = 0.0f;
  if (lane < k) {
    ex = experts[r * k + lane];
    dw = to_f32(dweights[r * k + lane]);
    p = expf(to_f32(l[ex]) - mx) / sum;
  }
  const float total = warp_sum(p);
  const float dot = warp_sum(dw * (renormalize ? p / total : p));
  T* dl = dlogits + r * E;
  for (int e0 = 0; e0 < E; e0 += 32) {  // uniform trip count: every lane takes part in the shuffles
    const int e = e0 + lane;
    const float pe = e < E ? expf(to_f32(l[e]) - mx) / sum : 0.0f;
    float g = renormalize ? 0.0f : -pe * dot;
    for (int j = 0; j < k; ++j) {
      const int exj = __shfl_sync(0xffffffffu, ex, j);
      const float dwj = __shfl_sync(0xffffffffu, dw, j);
      if (exj == e) g = renormalize ? pe / total * (dwj - dot) : g + dwj * pe;
    }
    if (e < E) dl[e] = from_f32<T>(g);
  }
}

}  // namespace

void moe_route_fwd(const void* logits, bool renormalize, int32_t* experts, void* weights, int64_t T,
                   int64_t E, int64_t k, DType dt) {
  if (T == 0) return;
  with_float_type(dt, [&](auto tag) {
    using R = decltype(tag);
    moe_route_fwd_kernel<R><<<unsigned((T + kWarps - 1) / kWarps), kWarps * 32>>>(
        static_cast<const R*>(logits), renormalize, experts, static_cast<R*>(weights), T, int(E), int(k));
  });
  TUNE_CUDA_LAUNCHED();
}

void moe_route_bwd(const void* logits, bool renormalize, const int32_t* experts, const void* dweights,
                   void* dlogits, int64_t T, int64_t E, int64_t k, DType dt) {
  if (T == 0) return;
  with_float_type(dt, [&](auto tag) {
    using R = decltype(tag);
    moe_route_bwd_kernel<R><<<unsigned((T + kWarps - 1) / kWarps), kWarps * 32>>>(
        static_cast<const R*>(logits), renormalize, experts, static_cast<const R*>(dweights),
        static_cast<R*>(dlogits), T, int(E), int(k));
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
