// lora_pack: blockIdx.y picks the segment; each block covers kPer x 256 consecutive elements of it (coalesced
// loads and stores), so that blocks past a short segment's end are few: a thread per element made the grid the
// widest segment's size over every segment, most of its blocks empty.
#include "ops/cuda/kernel_util.cuh"
#include "ops/lora_pack.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256, kPer = 8;

__global__ void lora_pack_kernel(const float* masters, const LoraPackSeg* segs) {
  const LoraPackSeg g = segs[blockIdx.y];
  const int64_t n = g.rows * g.width, i0 = int64_t(blockIdx.x) * kPer * kThreads + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int64_t i = i0 + k * kThreads;
    if (i >= n) return;
    const int64_t row = i / g.width, c = i - row * g.width;
    static_cast<bf16*>(g.dst)[row * g.ld + c] = from_f32<bf16>(g.scale * masters[g.src + i]);
  }
}

}  // namespace

void lora_pack(const float* masters, const LoraPackSeg* segs, int64_t n, int64_t max_elems, void* stream) {
  if (n == 0 || max_elems == 0) return;
  TUNE_CHECK(n < 65536) << "lora_pack: " << n << " segments";
  const dim3 grid(unsigned((max_elems + kPer * kThreads - 1) / (kPer * kThreads)), unsigned(n));
  lora_pack_kernel<<<grid, kThreads, 0, cudaStream_t(stream)>>>(masters, segs);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
