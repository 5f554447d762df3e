// moe_shared_gate on CUDA: one block per token; the row dot products are block reductions in fp32.
#include "ops/cuda/kernel_util.cuh"
#include "ops/moe_shared_gate.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void shared_gate_fwd_kernel(const bf16* x, const bf16* w, const bf16* ys, int64_t H, float* logit,
                                       bf16* out) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  float p = 0.0f;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) p += to_f32(x[t * H + j]) * to_f32(w[j]);
  const float l = block_sum(p, scratch);
  const float s = 1.0f / (1.0f + expf(-l));
  if (threadIdx.x == 0) logit[t] = l;
  if (!out) return;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
    out[t * H + j] = from_f32<bf16>(to_f32(out[t * H + j]) + s * to_f32(ys[t * H + j]));
}

__global__ void shared_gate_bwd_kernel(const bf16* w, const bf16* ys, const float* logit, const bf16* dout,
                                       int64_t H, bf16* dys, bf16* dx) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const float s = 1.0f / (1.0f + expf(-logit[t]));
  float p = 0.0f;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) p += to_f32(dout[t * H + j]) * to_f32(ys[t * H + j]);
  const float dl = s * (1.0f - s) * block_sum(p, scratch);
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    dys[t * H + j] = from_f32<bf16>(s * to_f32(dout[t * H + j]));
    dx[t * H + j] = from_f32<bf16>(to_f32(dx[t * H + j]) + dl * to_f32(w[j]));
  }
}

}  // namespace

void moe_shared_gate_fwd(const void* x, const void* w, const void* ys, int64_t T, int64_t H, float* logit,
                         void* out, void* stream) {
  if (T == 0) return;
  shared_gate_fwd_kernel<<<unsigned(T), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const bf16*>(x), static_cast<const bf16*>(w), static_cast<const bf16*>(ys), H, logit,
      static_cast<bf16*>(out));
  TUNE_CUDA_LAUNCHED();
}

void moe_shared_gate_bwd(const void* w, const void* ys, const float* logit, const void* dout, int64_t T,
                         int64_t H, void* dys, void* dx, void* stream) {
  if (T == 0) return;
  shared_gate_bwd_kernel<<<unsigned(T), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const bf16*>(w), static_cast<const bf16*>(ys), logit, static_cast<const bf16*>(dout), H,
      static_cast<bf16*>(dys), static_cast<bf16*>(dx));
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
