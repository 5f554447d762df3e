// Raw memory for tensors: 64-byte aligned host memory, or device memory when built with CUDA.
// Returns shared_ptr owners so views (and mmapped files) can keep their memory alive.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device.h"

namespace tune {

std::shared_ptr<void> alloc_bytes(size_t bytes, Device device);

// Backend hooks (allocator_cuda.cu when TUNE_CUDA, otherwise they report that CUDA is not built in).
void* cuda_malloc_bytes(size_t bytes);
void cuda_free_bytes(void* p);
void cuda_copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace tune
