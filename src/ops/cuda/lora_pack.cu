// lora_pack_b: one thread per element, blockIdx.y picks the segment.
#include "ops/cuda/kernel_util.cuh"
#include "ops/lora_pack.h"

namespace tune::cuda {

namespace {

__global__ void lora_pack_b_kernel(const float* masters, const LoraPackSeg* segs, int64_t r, float s) {
  const LoraPackSeg g = segs[blockIdx.y];
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= g.rows * r) return;
  const int64_t row = i / r, k = i % r;
  static_cast<bf16*>(g.dst)[row * g.ld + k] = from_f32<bf16>(s * masters[g.src + i]);
}

}  // namespace

void lora_pack_b(const float* masters, const LoraPackSeg* segs, int64_t n, int64_t max_rows, int64_t r, float s,
                 void* stream) {
  if (n == 0 || max_rows * r == 0) return;
  TUNE_CHECK(n < 65536) << "lora_pack_b: " << n << " segments";
  const dim3 grid(unsigned((max_rows * r + 255) / 256), unsigned(n));
  lora_pack_b_kernel<<<grid, 256, 0, cudaStream_t(stream)>>>(masters, segs, r, s);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
