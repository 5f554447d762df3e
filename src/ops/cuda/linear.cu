// linear on CUDA: the three products through cuBLAS (cublasGemmEx, fp32 compute, no TF32) on row-major data
// seen as column-major transposes: y^T = W x^T, dx^T = W^T dy^T, dW^T += x^T dy. The bias is broadcast into y
// first and the product added to it (beta = 1); db sums dy's columns with one thread per column
// (deterministic).
#include "ops/cuda/blas.h"
#include "ops/cuda/kernel_util.cuh"
#include "ops/linear.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::BF16:
      return CUDA_R_16BF;
    default:
      TUNE_CHECK(false) << "linear: no cuBLAS type for " << dtype_name(dt);
  }
  return CUDA_R_32F;
}

// y[t, n] = b[n] (or 0 without a bias).
template <class T>
__global__ void broadcast_rows_kernel(const T* b, T* y, int64_t T_, int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T_ * N;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = b ? b[i % N] : from_f32<T>(0.0f);
}

// db[n] += sum_t dy[t, n], accumulated in fp32.
template <class T, class G>
__global__ void column_sums_kernel(const T* dy, G* db, int64_t T_, int64_t N) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N;
       n += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t t = 0; t < T_; ++t) s += to_f32(dy[t * N + n]);
    db[n] = from_f32<G>(to_f32(db[n]) + s);
  }
}

// C (m x n, column-major, ldc) = alpha op(A) op(B) + beta C with fp32 compute.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, const void* A,
          DType at, int64_t lda, const void* B, DType bt, int64_t ldb, float beta, void* C, DType ct,
          int64_t ldc) {
  TUNE_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX) << "linear: GEMM too large for cublasGemmEx";
  const float alpha = 1.0f;
  CUBLAS_CHECK(cublasGemmEx(blas_handle(), ta, tb, int(m), int(n), int(k), &alpha, A, cuda_type(at), int(lda),
                            B, cuda_type(bt), int(ldb), &beta, C, cuda_type(ct), int(ldc), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void linear_fwd(const void* x, const void* w, const void* b, void* y, int64_t T, int64_t K, int64_t N,
                DType dt) {
  if (T == 0 || N == 0) return;
  float beta = 0.0f;
  if (b || K == 0) {  // K == 0: y is the bias alone (or zero)
    with_float_type(dt, [&](auto tag) {
      using R = decltype(tag);
      broadcast_rows_kernel<R>
          <<<grid_blocks(T * N, kThreads), kThreads>>>(static_cast<const R*>(b), static_cast<R*>(y), T, N);
    });
    TUNE_CUDA_LAUNCHED();
    beta = 1.0f;
  }
  if (K == 0) return;
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, w, dt, K, x, dt, K, beta, y, dt, N);
}

void linear_bwd(const void* x, const void* w, const void* dy, void* dx, bool accumulate_dx, void* dw,
                DType dw_dt, void* db, DType db_dt, int64_t T, int64_t K, int64_t N, DType dt) {
  if (dx && T > 0 && K > 0) {
    if (N > 0) {
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, K, T, N, w, dt, K, dy, dt, N, accumulate_dx ? 1.0f : 0.0f, dx, dt, K);
    } else if (!accumulate_dx) {
      CUDA_CHECK(cudaMemsetAsync(dx, 0, dtype_bytes(dt, T * K), nullptr));
    }
  }
  if (dw && T > 0 && K > 0 && N > 0)
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, K, N, T, x, dt, K, dy, dt, N, 1.0f, dw, dw_dt, K);
  if (db && N > 0) {
    with_float_type(dt, [&](auto tt) {
      with_float_type(db_dt, [&](auto gt) {
        using R = decltype(tt);
        using G = decltype(gt);
        column_sums_kernel<R, G>
            <<<grid_blocks(N, kThreads), kThreads>>>(static_cast<const R*>(dy), static_cast<G*>(db), T, N);
      });
    });
    TUNE_CUDA_LAUNCHED();
  }
}

}  // namespace tune::cuda
