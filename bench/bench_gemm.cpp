// Every cuBLASLt candidate for the frozen products of a qwen3-4b training step (2 x 2048 tokens, LoRA r 16
// folded into extra columns as model/forward_cuda.cpp lays them out), timed two ways:
//   burst:     the mean of REPS launches after 3 warm-ups, as ops/cuda/gemm.cu times its candidates;
//   sustained: about 100 ms of launches, then the mean of about 100 ms more: the GPU held at its power limit,
//              as a training step holds it.
// Operands: a (T, K) of N(0, 1) and weights of N(0, 0.02) (bf16), as `tune bench train` makes them.
// Usage: bench_gemm [REPS] [--sustained]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#ifdef TUNE_CUDA
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/dtype.h"
#include "ops/cuda/blas.h"
#include "ops/fill.h"
#endif

#ifdef TUNE_CUDA
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kCandidates = 8;

// Row-major D (M, N) = A (M, K) op(B): tb, B is stored (N, K) (a forward product, x W^T); else (K, N) (an
// input gradient, dy W). Leading dimensions include the folded LoRA columns.
struct Product {
  const char* name;
  int64_t M, N, K, lda, ldb, ldd;
  bool tb;
};

struct Matmul {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> cands;
};

// The column-major form of gemm.cu: cuBLASLt's A is our B, its B our A.
Matmul make(cublasLtHandle_t lt, const Product& p) {
  Matmul m;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&m.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opa = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(m.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(m.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m.a, CUDA_R_16BF, uint64_t(p.tb ? p.K : p.N),
                                          uint64_t(p.tb ? p.N : p.K), p.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m.b, CUDA_R_16BF, uint64_t(p.K), uint64_t(p.M), p.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&m.d, CUDA_R_16BF, uint64_t(p.N), uint64_t(p.M), p.ldd));
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  m.cands.resize(kCandidates);
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, m.desc, m.a, m.b, m.d, m.d, pref, kCandidates,
                                              m.cands.data(), &found));
  cublasLtMatmulPreferenceDestroy(pref);
  m.cands.resize(size_t(found));
  return m;
}

int config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  uint32_t v = 0;
  size_t written = 0;
  return cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written) == CUBLAS_STATUS_SUCCESS
             ? int(v)
             : -1;
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Mean microseconds of n calls of f.
  template <class F>
  double us(F&& f, int n) {
    CUDA_CHECK(cudaEventRecord(a));
    for (int i = 0; i < n; ++i) f();
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return double(ms) * 1e3 / n;
  }
};

void run(int reps, bool sustained) {
  cublasLtHandle_t lt = nullptr;
  CUBLAS_CHECK(cublasLtCreate(&lt));
  const size_t bytes = size_t(256) << 20;
  void *A, *B, *D, *ws;
  CUDA_CHECK(cudaMalloc(&A, bytes));
  CUDA_CHECK(cudaMalloc(&B, bytes));
  CUDA_CHECK(cudaMalloc(&D, bytes));
  CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));
  tune::cuda::fill_normal(A, tune::DType::BF16, int64_t(bytes / 2), 1, 0.0f, 1.0f);
  tune::cuda::fill_normal(B, tune::DType::BF16, int64_t(bytes / 2), 2, 0.0f, 0.02f);
  CUDA_CHECK(cudaDeviceSynchronize());
  // qwen3-4b: H 2560, q|k|v 6144 (+48 LoRA columns), I 9728; the input groups' u columns fold into K.
  const int64_t T = 4096;
  const Product products[] = {
      {"q|k|v", T, 6144, 2608, 2608, 2608, 6192, true},
      {"o", T, 2560, 4112, 4112, 4112, 2560, true},
      {"gate|up", T, 19456, 2592, 2592, 2592, 19488, true},
      {"down", T, 2560, 9744, 9744, 9744, 2560, true},
      {"dx q|k|v", T, 2560, 6192, 6192, 2608, 2560, false},
      {"dx o", T, 4096, 2576, 2576, 4112, 4096, false},
      {"dx gate|up", T, 2560, 19488, 19488, 2592, 2560, false},
      {"dx down", T, 9728, 2576, 2576, 9744, 9728, false},
  };
  Timer timer;
  const float one = 1.0f, zero = 0.0f;
  for (const Product& p : products) {
    Matmul m = make(lt, p);
    const double flop = 2.0 * double(p.M) * double(p.N) * double(p.K);
    std::printf("%-11s M %lld N %lld K %lld: %zu candidates (%s)\n", p.name, (long long)p.M, (long long)p.N,
                (long long)p.K, m.cands.size(), sustained ? "sustained" : "burst");
    std::vector<std::pair<double, size_t>> t;
    for (size_t i = 0; i < m.cands.size(); ++i) {
      auto call = [&] {
        CUBLAS_CHECK(cublasLtMatmul(lt, m.desc, &one, B, m.a, A, m.b, &zero, D, m.d, D, m.d, &m.cands[i].algo,
                                    ws, kWorkspaceBytes, nullptr));
      };
      for (int w = 0; w < 3; ++w) call();
      double us = timer.us(call, reps);
      if (sustained) {
        const int n = std::max(reps, int(1e5 / us));
        timer.us(call, n);
        us = timer.us(call, n);
      }
      t.push_back({us, i});
    }
    for (const auto& [us, i] : t) {
      const cublasLtMatmulAlgo_t& algo = m.cands[i].algo;
      std::printf("  #%zu %8.1f us %5.0f TFLOP/s  tile %d stages %d cluster %d  workspace %zu\n", i, us,
                  flop / us * 1e-6, config(algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                  config(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
                  config(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID), m.cands[i].workspaceSize);
    }
    cublasLtMatrixLayoutDestroy(m.a);
    cublasLtMatrixLayoutDestroy(m.b);
    cublasLtMatrixLayoutDestroy(m.d);
    cublasLtMatmulDescDestroy(m.desc);
  }
  cudaFree(A);
  cudaFree(B);
  cudaFree(D);
  cudaFree(ws);
  cublasLtDestroy(lt);
}

}  // namespace
#endif

int main(int argc, char** argv) {
#ifndef TUNE_CUDA
  (void)argc, (void)argv;
  std::printf("bench_gemm: built without CUDA\n");
  return 0;
#else
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const bool sustained = argc > 2 && std::string(argv[2]) == "--sustained";
  try {
    run(reps, sustained);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
