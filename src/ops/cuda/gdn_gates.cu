// gdn_gates on CUDA: one thread per (token, head), grid-stride; the (T, 2 nV) inputs are a few kB per layer.
#include "ops/cuda/vec_util.cuh"
#include "ops/gdn_gates.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

// torch.nn.functional.softplus with its default threshold: x itself above 20.
__device__ __forceinline__ float softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));
}

__global__ void gdn_gates_fwd_kernel(const bf16* ba, int64_t ld, const float* A_log, const float* dt_bias,
                                     float* beta, float* g, int64_t T, int64_t nV) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * nV;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / nV, h = i % nV;
    const bf16* row = ba + t * ld;
    beta[i] = sigmoid(to_f32(row[h]));
    g[i] = -expf(A_log[h]) * softplus(to_f32(row[nV + h]) + dt_bias[h]);
  }
}

__global__ void gdn_gates_bwd_kernel(const bf16* ba, int64_t ld, const float* A_log, const float* dt_bias,
                                     const float* dbeta, const float* dg, bf16* dba, int64_t ld_d, int64_t T,
                                     int64_t nV) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * nV;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / nV, h = i % nV;
    const bf16* row = ba + t * ld;
    const float be = sigmoid(to_f32(row[h])), x = to_f32(row[nV + h]) + dt_bias[h];
    dba[t * ld_d + h] = from_f32<bf16>(dbeta[i] * be * (1.0f - be));
    dba[t * ld_d + nV + h] = from_f32<bf16>(dg[i] * -expf(A_log[h]) * (x > 20.0f ? 1.0f : sigmoid(x)));
  }
}

}  // namespace

void gdn_gates_fwd(const void* ba, int64_t ld, const float* A_log, const float* dt_bias, float* beta,
                   float* g, int64_t T, int64_t nV, void* stream) {
  if (T * nV == 0) return;
  gdn_gates_fwd_kernel<<<grid_blocks(T * nV, kThreads), kThreads, 0, cudaStream_t(stream)>>>(
      static_cast<const bf16*>(ba), ld, A_log, dt_bias, beta, g, T, nV);
  TUNE_CUDA_LAUNCHED();
}

void gdn_gates_bwd(const void* ba, int64_t ld, const float* A_log, const float* dt_bias, const float* dbeta,
                   const float* dg, void* dba, int64_t ld_d, int64_t T, int64_t nV, void* stream) {
  if (T * nV == 0) return;
  gdn_gates_bwd_kernel<<<grid_blocks(T * nV, kThreads), kThreads, 0, cudaStream_t(stream)>>>(
      static_cast<const bf16*>(ba), ld, A_log, dt_bias, dbeta, dg, static_cast<bf16*>(dba), ld_d, T, nV);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
