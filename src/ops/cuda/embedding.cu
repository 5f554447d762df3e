// embedding on CUDA: one block per position copies (and converts) a table row. Ids are checked on the device:
// the first position holding an id outside [0, V) is recorded in a device flag that the host reads after the
// kernel (one synchronization per call), so the dispatcher can raise the same error as on the CPU.
#include <climits>

#include "ops/cuda/kernel_util.cuh"
#include "ops/embedding.h"

namespace tune::cuda {

namespace {

__device__ int g_first_bad_pos;

template <class Ti, class To>
__global__ void embedding_kernel(const int32_t* ids, const Ti* table, To* y, int64_t V, int64_t C) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  To* yr = y + t * C;
  if (id < 0 || id >= V) {
    if (threadIdx.x == 0) atomicMin(&g_first_bad_pos, int(t));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = from_f32<To>(0.0f);
    return;
  }
  const Ti* tr = table + int64_t(id) * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = from_f32<To>(to_f32(tr[c]));
}

}  // namespace

int64_t embedding_fwd(const int32_t* ids, const void* table, DType table_dt, void* y, DType y_dt, int64_t T,
                      int64_t V, int64_t C, int32_t* bad_id) {
  if (T == 0) return -1;
  TUNE_CHECK(T <= INT_MAX) << "embedding: " << T << " positions";
  const int none = INT_MAX;
  if (bad_id)
    CUDA_CHECK(
        cudaMemcpyToSymbolAsync(g_first_bad_pos, &none, sizeof(int), 0, cudaMemcpyHostToDevice, nullptr));
  with_float_type(table_dt, [&](auto ti) {
    with_float_type(y_dt, [&](auto to) {
      using Ti = decltype(ti);
      using To = decltype(to);
      embedding_kernel<Ti, To><<<unsigned(T), row_threads(C, 256)>>>(ids, static_cast<const Ti*>(table),
                                                                     static_cast<To*>(y), V, C);
    });
  });
  TUNE_CUDA_LAUNCHED();
  if (!bad_id) return -1;
  int bad = none;
  CUDA_CHECK(cudaMemcpyFromSymbol(&bad, g_first_bad_pos, sizeof(int)));
  if (bad == none) return -1;
  CUDA_CHECK(cudaMemcpy(bad_id, ids + bad, sizeof(int32_t), cudaMemcpyDeviceToHost));
  return bad;
}

}  // namespace tune::cuda
