// CUDA_CHECK(expr): throws InternalError naming the call, file and line when a CUDA runtime call fails.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define CUDA_CHECK(expr)                                                                     \
  do {                                                                                       \
    cudaError_t err_ = (expr);                                                               \
    TUNE_CHECK(err_ == cudaSuccess) << #expr << ": " << cudaGetErrorString(err_);            \
  } while (0)
