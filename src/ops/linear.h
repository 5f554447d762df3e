// Linear layer y = x W^T (+ b), PyTorch's nn.Linear, and its backward.
// fwd: x (T, K), w (N, K), b (N) or null -> y (T, N)
// bwd: dy (T, N) -> dx (T, K) (overwritten, or added to with accumulate_dx), dw (N, K) +=, db (N) +=; each optional
#pragma once

#include "core/tensor.h"

namespace tune {

void linear_fwd(const TensorView& x, const TensorView& w, const TensorView* b, const TensorView& y);
void linear_bwd(const TensorView& x, const TensorView& w, const TensorView& dy, const TensorView* dx,
                bool accumulate_dx, const TensorView* dw, const TensorView* db);

namespace cpu {
template <class R>
void linear_fwd(const R* x, const R* w, const R* b, R* y, int64_t T, int64_t K, int64_t N);
template <class R>
void linear_bwd(const R* x, const R* w, const R* dy, R* dx, bool accumulate_dx, R* dw, R* db, int64_t T, int64_t K,
                int64_t N);
// Forward with weights kept quantized (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) or in f16/bf16, as ggml's
// CPU matmul computes it: each row of x is converted once to the weight type's activation type (Q8_0, Q8_1,
// Q8_K, F16, BF16) and y[t][n] = vec_dot(w row n, x row t) (+ b[n] in f32); see quant/dot.h. x, b, y f32;
// `w` holds N rows of quant_row_bytes(wtype, K) bytes. Inference only: there is no backward.
void linear_quant_fwd(const float* x, const void* w, DType wtype, const float* b, float* y, int64_t T, int64_t K,
                      int64_t N);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA), through cuBLAS with fp32 compute: device pointers; x, w, b, y,
// dy, dx of the element type `dt` (f32 or bf16); dw and db each of `dt` or f32 (`dw_dt`, `db_dt`).
namespace cuda {
void linear_fwd(const void* x, const void* w, const void* b, void* y, int64_t T, int64_t K, int64_t N, DType dt);
void linear_bwd(const void* x, const void* w, const void* dy, void* dx, bool accumulate_dx, void* dw, DType dw_dt,
                void* db, DType db_dt, int64_t T, int64_t K, int64_t N, DType dt);
}  // namespace cuda

}  // namespace tune
