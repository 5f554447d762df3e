// The process-wide cuBLAS handle. It is never destroyed: at process exit the CUDA context may already be
// gone.
#include "ops/cuda/blas.h"

namespace tune::cuda {

cublasHandle_t blas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, cudaStreamPerThread));
    // Default math: fp32 data stays fp32 (no TF32). Disallowing reduced-precision reduction keeps split-K
    // partial sums in fp32 for bf16 outputs too; without it cuBLAS may sum them in bf16 (seen on an H200,
    // cuBLAS 13.0: a 300x37x129 bf16 product off by ~0.5% of its magnitude).
    CUBLAS_CHECK(cublasSetMathMode(
        h, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return h;
  }();
  return handle;
}

}  // namespace tune::cuda
