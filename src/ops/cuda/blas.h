// cuBLAS for the CUDA ops: one handle for the process (created on first use, on the calling thread's default
// stream) and a check macro. GEMMs run with fp32 compute (CUBLAS_COMPUTE_32F; no TF32, split-K sums in fp32) on f32 or bf16
// storage.
#pragma once

#include <cublas_v2.h>

#include "core/error.h"

#define CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                       \
    cublasStatus_t st_ = (expr);                                                             \
    TUNE_CHECK(st_ == CUBLAS_STATUS_SUCCESS) << #expr << ": " << cublasGetStatusString(st_); \
  } while (0)

namespace tune::cuda {

cublasHandle_t blas_handle();

// The stream a library call gets for an op's stream argument: null is the calling thread's default stream, as for
// tune's own launches (the build's per-thread default stream); cuBLAS would take null as the legacy stream 0.
inline cudaStream_t op_stream(void* stream) {
  return stream ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
}

}  // namespace tune::cuda
