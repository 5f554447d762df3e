// Host allocation and the CPU-only fallbacks of the CUDA hooks.
#include "core/allocator.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace tune {

std::shared_ptr<void> alloc_bytes(size_t bytes, Device device) {
  if (device == Device::CUDA) {
    return std::shared_ptr<void>(cuda_malloc_bytes(bytes), [](void* p) { cuda_free_bytes(p); });
  }
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

#ifndef TUNE_CUDA
bool cuda_available() { return false; }
void* cuda_malloc_bytes(size_t) {
  throw UnsupportedError("CUDA memory requested but tune was built without CUDA",
                         "rebuild with nvcc on PATH (or -DTUNE_CUDA=ON), or use --device cpu");
}
void cuda_free_bytes(void*) {}
void cuda_copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device != Device::CPU || src_device != Device::CPU) cuda_malloc_bytes(0);
  std::memcpy(dst, src, bytes);
}
#endif

}  // namespace tune
