// cuBLASLt GEMMs for the training path. Row-major D = op(A) op(B) is computed as the column-major product
// D^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B and its "B" is our A, with the transposes read off the storage
// (see gemm.h). One plan per distinct call is built on first use and reused.
#include <cublasLt.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/blas.h"
#include "ops/gemm.h"

namespace tune::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

cudaDataType_t lt_type(DType dt) {
  TUNE_CHECK(dt == DType::BF16 || dt == DType::F32) << "gemm: no cuBLASLt type for " << dtype_name(dt);
  return dt == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

// Largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by the alignment it is promised.
int alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % uintptr_t(al)) != 0) al /= 2;
  return al;
}

struct Key {
  int64_t M, N, K, lda, ldb, ldd;
  int ta, tb, ab, d, bias, beta_zero, al_a, al_b, al_d;
  bool operator==(const Key& o) const { return std::memcmp(this, &o, sizeof(Key)) == 0; }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(&k);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(Key); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

// The output that candidates of an accumulating product (C == D, beta != 0) are timed into: made with the
// context, so that a step allocates nothing.
constexpr size_t kScratchBytes = size_t(64) << 20;

// A call's key with M, N and K rounded up (to a multiple of 16 up to 256, to a power of two beyond): products of
// similar sizes share the timed choice. A training step's token count changes with every batch of packed rows;
// timing each new count's candidates again (each a wait for the device) made qwen3-4b's packed steps 46% longer
// (bench/RESULTS.md under 0cb5d0c).
Key bucket(Key k) {
  auto up = [](int64_t x) {
    if (x <= 256) return x <= 16 ? x : (x + 15) / 16 * 16;
    int64_t p = 512;
    while (p < x) p *= 2;
    return p;
  };
  k.M = up(k.M), k.N = up(k.N), k.K = up(k.K);
  return k;
}

struct Context {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  void* scratch = nullptr;
  std::mutex mu;
  std::unordered_map<Key, Plan, KeyHash> plans;
  std::unordered_map<Key, cublasLtMatmulAlgo_t, KeyHash> timed;  // per bucket(key): the algorithm timing chose
  int64_t timings = 0;                                            // plans whose candidates were timed
};

// Never destroyed: at process exit the CUDA context may already be gone.
Context& context() {
  static Context* ctx = [] {
    auto* c = new Context;
    CUBLAS_CHECK(cublasLtCreate(&c->handle));
    CUDA_CHECK(cudaMalloc(&c->workspace, kWorkspaceBytes));
    CUDA_CHECK(cudaMalloc(&c->scratch, kScratchBytes));
    return c;
  }();
  return *ctx;
}

// Up to this many of the heuristic's candidates are timed once per plan, on the call's own operands, and the
// fastest kept: the heuristic's first choice is not always the fastest for the skinny shapes of LoRA and the odd
// widths of some models. Outputs over kMaxTimedBytes keep its choice, which bounds the first step's timing; the
// bound takes in qwen3-4b's gate|up product and the output head's 512-row logits chunk (155-160 MB), whose timed
// choices made its training step 0.5% faster (bench/RESULTS.md, call 7 under commit 61da91c).
constexpr int kCandidates = 6;
constexpr size_t kMaxTimedBytes = size_t(192) << 20;

struct Operands {
  const void *A, *B, *C;
  void* D;
  float alpha, beta;
  cudaStream_t stream;
};

Plan make_plan(Context& ctx, const Key& k, const Operands& op) {
  Plan p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // cuBLASLt "A" = our B (opB(B)^T is N x K), cuBLASLt "B" = our A (opA(A)^T is K x M).
  const cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  if (k.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    const cudaDataType_t bt = lt_type(DType(k.d));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  const cudaDataType_t ab = lt_type(DType(k.ab)), dt = lt_type(DType(k.d));
  // Column-major layouts of the row-major storage: a row-major (r, c) array is a column-major (c, r) one.
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab, k.tb ? uint64_t(k.K) : uint64_t(k.N),
                                            k.tb ? uint64_t(k.N) : uint64_t(k.K), k.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab, k.ta ? uint64_t(k.M) : uint64_t(k.K),
                                            k.ta ? uint64_t(k.K) : uint64_t(k.M), k.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, dt, uint64_t(k.N), uint64_t(k.M), k.ldd));

  // A product of the same bucket timed before: its choice, where cuBLASLt confirms it runs this problem.
  if (auto it = ctx.timed.find(bucket(k)); it != ctx.timed.end()) {
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(ctx.handle, p.desc, p.a, p.b, p.d, p.d, &it->second, &check) ==
            CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= kWorkspaceBytes) {
      p.algo = it->second;
      return p;
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  // Split-K partial sums in fp32 (never reduced in a bf16 output type).
  const uint32_t red = CUBLASLT_REDUCTION_SCHEME_INPLACE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof red));
  const uint32_t al_a = uint32_t(k.al_b), al_b = uint32_t(k.al_a), al_d = uint32_t(k.al_d);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                      sizeof al_a));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                      sizeof al_b));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                      sizeof al_d));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                      sizeof al_d));
  cublasLtMatmulHeuristicResult_t res[kCandidates]{};
  int found = 0;
  CUBLAS_CHECK(
      cublasLtMatmulAlgoGetHeuristic(ctx.handle, p.desc, p.a, p.b, p.d, p.d, pref, kCandidates, res, &found));
  cublasLtMatmulPreferenceDestroy(pref);
  TUNE_CHECK(found > 0) << "gemm: cuBLASLt has no algorithm for M=" << k.M << " N=" << k.N << " K=" << k.K;
  p.algo = res[0].algo;
  // The candidates write D itself, which the call's own product overwrites next; an accumulating product
  // (D = C + ...) must keep D, so its candidates write the context's scratch, and one too large for it keeps the
  // heuristic's choice.
  const size_t dbytes = size_t(k.M) * size_t(k.ldd) * (DType(k.d) == DType::BF16 ? 2 : 4);
  const bool accumulates = op.C == op.D;
  // Nothing is timed while a CUDA graph captures the stream (its steps run only at replay).
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(op.stream, &capture));
  if (found == 1 || dbytes > kMaxTimedBytes || (accumulates && dbytes > kScratchBytes) ||
      capture != cudaStreamCaptureStatusNone)
    return p;
  void* out = accumulates ? ctx.scratch : op.D;
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  float best = INFINITY;
  for (int i = 0; i < found; ++i) {
    auto launch = [&] {
      return cublasLtMatmul(ctx.handle, p.desc, &op.alpha, op.B, p.a, op.A, p.b, &op.beta, op.C ? op.C : out, p.d,
                            out, p.d, &res[i].algo, ctx.workspace, kWorkspaceBytes, op.stream);
    };
    if (launch() != CUBLAS_STATUS_SUCCESS) continue;
    CUDA_CHECK(cudaEventRecord(e0, op.stream));
    for (int rep = 0; rep < 3; ++rep) CUBLAS_CHECK(launch());
    CUDA_CHECK(cudaEventRecord(e1, op.stream));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (ms < best) best = ms, p.algo = res[i].algo;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (best < INFINITY) ctx.timed[bucket(k)] = p.algo, ++ctx.timings;
  return p;
}

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, float alpha, GemmOperand A, GemmOperand B, DType ab_dtype, float beta,
          const void* C, void* D, int64_t ldd, DType d_dtype, const void* bias, void* stream) {
  if (M == 0 || N == 0) return;
  TUNE_CHECK(beta == 0.0f || C == D || C != nullptr) << "gemm: beta != 0 needs C";
  Context& ctx = context();
  const Key key{M,         N,        K,
                A.ld,      B.ld,     ldd,
                A.trans,   B.trans,  int(ab_dtype),
                int(d_dtype), bias != nullptr, beta == 0.0f,
                alignment(A.data), alignment(B.data), std::min(alignment(D), C ? alignment(C) : 256)};
  Plan* plan;
  {
    std::lock_guard<std::mutex> lock(ctx.mu);
    auto it = ctx.plans.find(key);
    if (it == ctx.plans.end()) {
      const Operands op{A.data, B.data, beta == 0.0f ? nullptr : (C ? C : D), D, alpha, beta,
                        op_stream(stream)};
      it = ctx.plans.emplace(key, make_plan(ctx, key, op)).first;
    }
    plan = &it->second;
  }
  if (bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                  sizeof bias));
  CUBLAS_CHECK(cublasLtMatmul(ctx.handle, plan->desc, &alpha, B.data, plan->a, A.data, plan->b, &beta,
                                C ? C : D, plan->d, D, plan->d, &plan->algo, ctx.workspace, kWorkspaceBytes,
                                op_stream(stream)));
}

void gemm_grouped(int64_t G, const int64_t* M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B,
                  int64_t b_stride, bool trans_b, float alpha, float beta, void* D, int64_t ldd, void* stream) {
  cublasHandle_t h = blas_handle();
  CUBLAS_CHECK(cublasSetStream(h, op_stream(stream)));
  const auto* a = static_cast<const uint16_t*>(A);
  const auto* b = static_cast<const uint16_t*>(B);
  auto* d = static_cast<uint16_t*>(D);
  int64_t row = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t m = M[g];
    if (m > 0) {
      // Column-major: D^T (N, m) = op(B_g)^T (N, K) A_g^T (K, m).
      CUBLAS_CHECK(cublasGemmEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, int(N), int(m), int(K), &alpha,
                                b + g * b_stride, CUDA_R_16BF, int(trans_b ? K : N), a + row * lda, CUDA_R_16BF,
                                int(lda), &beta, d + row * ldd, CUDA_R_16BF, int(ldd), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
    }
    row += m;
  }
  CUBLAS_CHECK(cublasSetStream(h, cudaStreamPerThread));
}

void gemm_grouped_wgrad(int64_t G, const int64_t* M, int64_t N1, int64_t N2, const void* A, int64_t lda,
                        const void* B, int64_t ldb, float alpha, float* D, int64_t d_stride, void* stream) {
  cublasHandle_t h = blas_handle();
  CUBLAS_CHECK(cublasSetStream(h, op_stream(stream)));
  const float beta = 1.0f;
  const auto* a = static_cast<const uint16_t*>(A);
  const auto* b = static_cast<const uint16_t*>(B);
  int64_t row = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t m = M[g];
    if (m > 0) {
      // Column-major: D_g^T (N2, N1) += B_g^T (N2, m) A_g (m, N1); the stored rows are B_g^T and A_g^T already.
      CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, int(N2), int(N1), int(m), &alpha, b + row * ldb,
                                CUDA_R_16BF, int(ldb), a + row * lda, CUDA_R_16BF, int(lda), &beta, D + g * d_stride,
                                CUDA_R_32F, int(N2), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    row += m;
  }
  CUBLAS_CHECK(cublasSetStream(h, cudaStreamPerThread));
}

int64_t gemm_timings() {
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mu);
  return ctx.timings;
}

int64_t gemm_workspace_bytes() {
  return int64_t(kWorkspaceBytes + kScratchBytes);
}

}  // namespace tune::cuda
