// Dense matrix products on CUDA through cuBLASLt, in row-major terms (the layout of every tensor in tune):
//   D (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C (M, N) [+ bias (N)]
// A is stored (M, K) with row stride lda, or (K, M) when trans_a; B is stored (K, N) with row stride ldb, or
// (N, K) when trans_b (a PyTorch weight [out, in] used as x W^T is B with trans_b). C and D share type and row
// stride ldd and may be the same buffer (accumulate in place); C may be null when beta == 0. A and B share one
// type (bf16 or f32), D is bf16 or f32; compute is fp32 (no TF32), split-K partial sums stay fp32.
// Plans (descriptors + the fastest of the heuristic's first candidates, timed once on the first call's operands)
// are cached per shape, strides, types and pointer alignment, so only a shape's first step allocates (the timing
// scratch). A shape of similar size to one timed before (M, N and K rounded up to a multiple of 16 up to 256, to a
// power of two beyond) takes that choice untimed, where cuBLASLt confirms it runs the new shape. Plain C++ header:
// callers need no CUDA headers.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tune::cuda {

struct GemmOperand {
  const void* data = nullptr;
  int64_t ld = 0;  // row stride in elements
  bool trans = false;
};

void gemm(int64_t M, int64_t N, int64_t K, float alpha, GemmOperand A, GemmOperand B, DType ab_dtype, float beta,
          const void* C, void* D, int64_t ldd, DType d_dtype, const void* bias = nullptr, void* stream = nullptr);

// Grouped products (MoE experts): the rows of A are G consecutive groups of M[g] rows (M on the host), and group g
// uses its own B_g = B + g * b_stride elements; D's rows follow A's. Per group, D_g (M_g, N) = alpha A_g (M_g, K)
// @ op(B_g) + beta D_g, op(B_g) = B_g^T of a stored (N, K) when trans_b, else the stored (K, N). bf16 A, B and D,
// fp32 compute. Through cuBLAS's own heuristics (no per-shape plan or timing: the group sizes change every step).
void gemm_grouped(int64_t G, const int64_t* M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B,
                  int64_t b_stride, bool trans_b, float alpha, float beta, void* D, int64_t ldd,
                  void* stream = nullptr);
// Per-group weight gradients over the same row groups: D_g (N1, N2) += alpha A_g^T (N1, M_g) @ B_g (M_g, N2), A_g
// and B_g the group's rows of A (row stride lda) and B (ldb), bf16; D_g = D + g * d_stride, f32, row-major.
void gemm_grouped_wgrad(int64_t G, const int64_t* M, int64_t N1, int64_t N2, const void* A, int64_t lda,
                        const void* B, int64_t ldb, float alpha, float* D, int64_t d_stride, void* stream = nullptr);

// How many plans have had their candidates timed so far (each a wait for the device).
int64_t gemm_timings();

// Device bytes the GEMMs hold: cuBLASLt's workspace and the scratch that algorithm timing writes (for memory
// plans and reports).
int64_t gemm_workspace_bytes();

}  // namespace tune::cuda
