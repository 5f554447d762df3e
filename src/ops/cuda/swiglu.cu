// swiglu on CUDA: elementwise, fp32 math, grid-stride loops.
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/vec_util.cuh"
#include "ops/swiglu.h"

namespace tune::cuda {

namespace {

// h may alias g (each element is read before it is written).
template <class T>
__global__ void swiglu_fwd_kernel(const T* g, const T* u, T* h, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = to_f32(g[i]);
    h[i] = from_f32<T>(gi / (1.0f + expf(-gi)) * to_f32(u[i]));
  }
}

// dg, du may alias dh (all three inputs are read before either output is written).
template <class T>
__global__ void swiglu_bwd_kernel(const T* g, const T* u, const T* dh, T* dg, T* du, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = to_f32(g[i]), ui = to_f32(u[i]), d = to_f32(dh[i]);
    const float s = 1.0f / (1.0f + expf(-gi));
    du[i] = from_f32<T>(d * gi * s);
    dg[i] = from_f32<T>(d * ui * s * (1.0f + gi * (1.0f - s)));
  }
}

constexpr int kThreads = 256;

}  // namespace

void swiglu_fwd(const void* g, const void* u, void* h, int64_t n, DType dt) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    swiglu_fwd_kernel<T><<<grid_blocks(n, kThreads), kThreads>>>(
        static_cast<const T*>(g), static_cast<const T*>(u), static_cast<T*>(h), n);
  });
  TUNE_CUDA_LAUNCHED();
}

void swiglu_bwd(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n, DType dt) {
  if (n == 0) return;
  with_float_type(dt, [&](auto tag) {
    using T = decltype(tag);
    swiglu_bwd_kernel<T><<<grid_blocks(n, kThreads), kThreads>>>(
        static_cast<const T*>(g), static_cast<const T*>(u), static_cast<const T*>(dh), static_cast<T*>(dg),
        static_cast<T*>(du), n);
  });
  TUNE_CUDA_LAUNCHED();
}

namespace {

// One thread per pair of adjacent elements of a row (I even: bf16x2 loads and stores); rows along grid y.
// One thread per V consecutive columns of a row (V = 8: 16-byte accesses when I and the strides allow it).
template <int V>
__global__ void swiglu_fused_fwd_kernel(const bf16* gu, bf16* h, int64_t T_, int64_t I, int64_t ldh, int64_t ldgu) {
  const int64_t j = V * (blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (j >= I) return;
  for (int64_t t = blockIdx.y; t < T_; t += gridDim.y) {
    float g[V], u[V], y[V];
    load_bf16<V>(gu + t * ldgu + j, g);
    load_bf16<V>(gu + t * ldgu + I + j, u);
#pragma unroll
    for (int e = 0; e < V; ++e) y[e] = g[e] / (1.0f + expf(-g[e])) * u[e];
    store_bf16<V>(h + t * ldh + j, y);
  }
}

// kH: also h = silu(g) u (the forward's value, same expression) into h (T, I), which may alias dh: each
// thread reads its dh elements before it writes h there.
template <int V, bool kH>
__global__ void swiglu_fused_bwd_kernel(const bf16* gu, const bf16* dh, bf16* dgu, bf16* h, int64_t T_, int64_t I,
                                        int64_t ldgu) {
  const int64_t j = V * (blockIdx.x * int64_t(blockDim.x) + threadIdx.x);
  if (j >= I) return;
  for (int64_t t = blockIdx.y; t < T_; t += gridDim.y) {
    float g[V], u[V], d[V], dg[V], du[V], y[V];
    load_bf16<V>(gu + t * ldgu + j, g);
    load_bf16<V>(gu + t * ldgu + I + j, u);
    load_bf16<V>(dh + t * I + j, d);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const float sg = 1.0f / (1.0f + expf(-g[e]));
      dg[e] = d[e] * u[e] * sg * (1.0f + g[e] * (1.0f - sg));
      du[e] = d[e] * g[e] * sg;
      if (kH) y[e] = g[e] / (1.0f + expf(-g[e])) * u[e];
    }
    store_bf16<V>(dgu + t * ldgu + j, dg);
    store_bf16<V>(dgu + t * ldgu + I + j, du);
    if (kH) store_bf16<V>(h + t * I + j, y);
  }
}

dim3 fused_grid(int64_t T_, int64_t I, int V) {
  return dim3(unsigned((I / V + 127) / 128), unsigned(T_ < 65535 ? T_ : 65535));
}

}  // namespace

void swiglu_fused_fwd(const void* gu, void* h, int64_t T, int64_t I, int64_t ldh, int64_t ldgu) {
  if (T * I == 0) return;
  TUNE_CHECK(I % 2 == 0 && ldgu % 2 == 0) << "swiglu_fused_fwd: odd width " << I << " or stride " << ldgu;
  if (ldh == 0) ldh = I;
  if (ldgu == 0) ldgu = 2 * I;
  auto go = [&](auto v) {
    constexpr int V = decltype(v)::value;
    swiglu_fused_fwd_kernel<V><<<fused_grid(T, I, V), 128>>>(static_cast<const bf16*>(gu), static_cast<bf16*>(h), T,
                                                             I, ldh, ldgu);
  };
  if (bf16_vec_fits(8, {gu, h}, {I, ldh, ldgu})) go(std::integral_constant<int, 8>{});
  else go(std::integral_constant<int, 2>{});
  TUNE_CUDA_LAUNCHED();
}

void swiglu_fused_bwd(const void* gu, const void* dh, void* dgu, int64_t T, int64_t I, int64_t ldgu, void* h) {
  if (T * I == 0) return;
  TUNE_CHECK(I % 2 == 0 && ldgu % 2 == 0) << "swiglu_fused_bwd: odd width " << I << " or stride " << ldgu;
  if (ldgu == 0) ldgu = 2 * I;
  auto go = [&](auto v, auto with_h) {
    constexpr int V = decltype(v)::value;
    swiglu_fused_bwd_kernel<V, decltype(with_h)::value><<<fused_grid(T, I, V), 128>>>(
        static_cast<const bf16*>(gu), static_cast<const bf16*>(dh), static_cast<bf16*>(dgu), static_cast<bf16*>(h), T,
        I, ldgu);
  };
  auto pick = [&](auto with_h) {
    if (bf16_vec_fits(8, {gu, dh, dgu, h}, {I, ldgu})) go(std::integral_constant<int, 8>{}, with_h);
    else go(std::integral_constant<int, 2>{}, with_h);
  };
  if (h) pick(std::true_type{});
  else pick(std::false_type{});
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
