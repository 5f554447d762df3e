// lora_pack: one thread per element, blockIdx.y picks the segment.
#include "ops/cuda/kernel_util.cuh"
#include "ops/lora_pack.h"

namespace tune::cuda {

namespace {

__global__ void lora_pack_kernel(const float* masters, const LoraPackSeg* segs) {
  const LoraPackSeg g = segs[blockIdx.y];
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= g.rows * g.width) return;
  const int64_t row = i / g.width, k = i % g.width;
  static_cast<bf16*>(g.dst)[row * g.ld + k] = from_f32<bf16>(g.scale * masters[g.src + i]);
}

}  // namespace

void lora_pack(const float* masters, const LoraPackSeg* segs, int64_t n, int64_t max_elems, void* stream) {
  if (n == 0 || max_elems == 0) return;
  TUNE_CHECK(n < 65536) << "lora_pack: " << n << " segments";
  const dim3 grid(unsigned((max_elems + 255) / 256), unsigned(n));
  lora_pack_kernel<<<grid, 256, 0, cudaStream_t(stream)>>>(masters, segs);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
