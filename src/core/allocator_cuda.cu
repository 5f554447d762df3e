// Device memory through the CUDA runtime (built only with TUNE_CUDA).
#include "core/allocator.h"
#include "core/cuda_check.h"

namespace tune {

bool cuda_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void* cuda_malloc_bytes(size_t bytes) {
  if (!cuda_available()) {
    throw UnsupportedError("CUDA memory requested but no CUDA device is present", "use --device cpu");
  }
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 256 : bytes));
  return p;
}

void cuda_free_bytes(void* p) { cudaFree(p); }

void cuda_copy_bytes(void* dst, Device, const void* src, Device, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

}  // namespace tune
