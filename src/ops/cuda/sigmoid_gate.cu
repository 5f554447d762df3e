// sigmoid_gate on CUDA: elementwise, grid-stride over (row, vector of V columns), 16-byte vectors where the
// pointers and strides allow. Each thread reads its elements of every input before writing any output, so the
// in-place uses (y = x, dx = dy, dg = g with the same stride) are safe.
#include "ops/cuda/vec_util.cuh"
#include "ops/sigmoid_gate.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

template <int V>
__global__ void sigmoid_gate_fwd_kernel(const bf16* x, int64_t ldx, const bf16* g, int64_t ldg, bf16* y,
                                        int64_t ldy, int64_t T, int64_t N) {
  const int64_t vecs = N / V;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / vecs, j = i % vecs * V;
    float a[V], b[V];
    load_bf16<V>(x + t * ldx + j, a);
    load_bf16<V>(g + t * ldg + j, b);
#pragma unroll
    for (int e = 0; e < V; ++e) a[e] *= sigmoid(b[e]);
    store_bf16<V>(y + t * ldy + j, a);
  }
}

template <int V>
__global__ void sigmoid_gate_bwd_kernel(const bf16* x, int64_t ldx, const bf16* g, int64_t ldg,
                                        const bf16* dy, int64_t ldy, bf16* dx, int64_t lddx, bf16* dg,
                                        int64_t lddg, int64_t T, int64_t N) {
  const int64_t vecs = N / V;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / vecs, j = i % vecs * V;
    float a[V], b[V], d[V];
    load_bf16<V>(x + t * ldx + j, a);
    load_bf16<V>(g + t * ldg + j, b);
    load_bf16<V>(dy + t * ldy + j, d);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const float s = sigmoid(b[e]);
      b[e] = d[e] * a[e] * s * (1.0f - s);  // dg
      d[e] *= s;                            // dx
    }
    store_bf16<V>(dx + t * lddx + j, d);
    store_bf16<V>(dg + t * lddg + j, b);
  }
}

}  // namespace

void sigmoid_gate_fwd(const void* x, int64_t ldx, const void* g, int64_t ldg, void* y, int64_t ldy, int64_t T,
                      int64_t N, void* stream) {
  if (T * N == 0) return;
  with_bf16_vec<8>({x, g, y}, {N, ldx, ldg, ldy}, [&](auto vw) {
    constexpr int V = decltype(vw)::value;
    sigmoid_gate_fwd_kernel<V><<<grid_blocks(T * N / V, kThreads), kThreads, 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(x), ldx, static_cast<const bf16*>(g), ldg, static_cast<bf16*>(y), ldy, T, N);
  });
  TUNE_CUDA_LAUNCHED();
}

void sigmoid_gate_bwd(const void* x, int64_t ldx, const void* g, int64_t ldg, const void* dy, int64_t ldy,
                      void* dx, int64_t lddx, void* dg, int64_t lddg, int64_t T, int64_t N, void* stream) {
  if (T * N == 0) return;
  with_bf16_vec<8>({x, g, dy, dx, dg}, {N, ldx, ldg, ldy, lddx, lddg}, [&](auto vw) {
    constexpr int V = decltype(vw)::value;
    sigmoid_gate_bwd_kernel<V><<<grid_blocks(T * N / V, kThreads), kThreads, 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(x), ldx, static_cast<const bf16*>(g), ldg, static_cast<const bf16*>(dy), ldy,
        static_cast<bf16*>(dx), lddx, static_cast<bf16*>(dg), lddg, T, N);
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
