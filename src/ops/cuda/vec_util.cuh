// Helpers for the training path's bandwidth-bound bf16 kernels: V consecutive bf16 (2V bytes) moved by one
// load or store, the widest V that a launch's pointers and strides allow, rows of up to 256 elements held in
// one warp's registers, and the activations in fp32. Included by .cu files only.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "ops/cuda/kernel_util.cuh"

namespace tune::cuda {

// The word that V bf16 travel in: one 2-, 4-, 8- or 16-byte load or store.
template <int V>
struct Bf16Word;
template <>
struct Bf16Word<1> {
  using type = bf16;
};
template <>
struct Bf16Word<2> {
  using type = uint32_t;
};
template <>
struct Bf16Word<4> {
  using type = uint2;
};
template <>
struct Bf16Word<8> {
  using type = uint4;
};

// p must be 2V-byte aligned.
template <int V>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&x)[V]) {
  using W = typename Bf16Word<V>::type;
  const W w = *reinterpret_cast<const W*>(p);
  const bf16* b = reinterpret_cast<const bf16*>(&w);
#pragma unroll
  for (int e = 0; e < V; ++e) x[e] = __bfloat162float(b[e]);
}

template <int V>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&x)[V]) {
  using W = typename Bf16Word<V>::type;
  W w;
  if constexpr (V == 1) {
    w = __float2bfloat16(x[0]);
  } else {
    __nv_bfloat162* b = reinterpret_cast<__nv_bfloat162*>(&w);
#pragma unroll
    for (int e = 0; e < V / 2; ++e) b[e] = __floats2bfloat162_rn(x[2 * e], x[2 * e + 1]);
  }
  *reinterpret_cast<W*>(p) = w;
}

// Whether V-element vectors fit: every pointer 2V-byte aligned, every count (lengths, strides, column
// offsets) a multiple of V.
inline bool bf16_vec_fits(int V, std::initializer_list<const void*> ptrs,
                          std::initializer_list<int64_t> counts) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % uintptr_t(2 * V) != 0) return false;
  for (int64_t c : counts)
    if (c % V != 0) return false;
  return true;
}

// Calls f(std::integral_constant<int, V>{}) with the widest V in {1, 2, 4, ..., kMaxV} that fits.
template <int kMaxV, class F>
void with_bf16_vec(std::initializer_list<const void*> ptrs, std::initializer_list<int64_t> counts, F&& f) {
  if constexpr (kMaxV > 1) {
    if (!bf16_vec_fits(kMaxV, ptrs, counts)) return with_bf16_vec<kMaxV / 2>(ptrs, counts, f);
  }
  f(std::integral_constant<int, kMaxV>{});
}

// A row of n <= 256 elements held by one warp: lane l holds chunks l, l + 32, ... (C of them) of V elements
// each, chunk c at elements [(l + 32 c) V, (l + 32 c) V + V); chunks past n read as zeros and are not stored.
// Three layouts: one 8-byte vector per lane (n <= 128), one 16-byte vector (n <= 256), or 8 scalars where the
// pointers or sizes allow no vectors.
template <int V, int C>
struct RowLayout {
  static constexpr int kV = V, kC = C;
};

// Calls f(RowLayout<V, C>{}) for rows of n <= 256 (n and the strides in `counts`).
template <class F>
void with_row_layout(int64_t n, std::initializer_list<const void*> ptrs,
                     std::initializer_list<int64_t> counts, F&& f) {
  if (n <= 128 && bf16_vec_fits(4, ptrs, counts)) {
    f(RowLayout<4, 1>{});
  } else if (bf16_vec_fits(8, ptrs, counts)) {
    f(RowLayout<8, 1>{});
  } else {
    f(RowLayout<1, 8>{});
  }
}

__device__ __forceinline__ int row_col(int c, int V) {
  return ((threadIdx.x & 31) + 32 * c) * V;
}

template <int V, int C>
__device__ __forceinline__ void warp_row_load(const bf16* p, int n, float (&x)[C][V]) {
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int j = row_col(c, V);
    if (j < n) {
      load_bf16<V>(p + j, x[c]);
    } else {
#pragma unroll
      for (int e = 0; e < V; ++e) x[c][e] = 0.0f;
    }
  }
}

template <int V, int C>
__device__ __forceinline__ void warp_row_store(bf16* p, int n, const float (&x)[C][V]) {
#pragma unroll
  for (int c = 0; c < C; ++c)
    if (row_col(c, V) < n) store_bf16<V>(p + row_col(c, V), x[c]);
}

__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}
__device__ __forceinline__ float silu(float x) {
  return x * sigmoid(x);
}
// d silu / dx = sigmoid(x) (1 + x (1 - sigmoid(x)))
__device__ __forceinline__ float dsilu(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace tune::cuda
