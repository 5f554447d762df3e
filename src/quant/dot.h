// Dot products of quantized (or f16/bf16) weight rows with activation rows the way ggml's CPU matmul computes
// them: the activation row is first converted to the weight type's "vec_dot type" — Q8_0 for Q8_0/Q4_0/Q5_0,
// Q8_1 for Q4_1/Q5_1, Q8_K (with its 16-element sums) for Q2_K..Q6_K, F16 for F16, BF16 for BF16 — and each
// weight row is then multiplied with integer products per block and float scale arithmetic. The arithmetic
// (integer sums, float accumulation order, f16 rounding of the activation scales) follows ggml's generic C
// versions (`ggml_vec_dot_<w>_<a>_generic`, `ggml_vec_dot_f16`/`bf16` without SIMD: double accumulation);
// the activation quantizers follow ggml's x86 (AVX) `quantize_row_q8_0`/`q8_1` (scale 127/max, rounding to
// nearest even) and `quantize_row_q8_K_ref`. The SIMD dot products of a given llama.cpp build sum in another
// order, so results agree with it to float rounding, not bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace tune {

// True for the weight types vec_dot supports (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, F16, BF16).
bool vec_dot_supported(DType wtype);

// Bytes of one activation row of `cols` values in the type ggml pairs with `wtype`. UnsupportedError for other
// weight types or when cols is not a whole number of blocks.
size_t vec_dot_act_row_bytes(DType wtype, int64_t cols);

// Quantizes one activation row of `cols` f32 values into `dst` (vec_dot_act_row_bytes bytes) for `wtype`.
void vec_dot_quantize_act(DType wtype, const float* x, void* dst, int64_t cols);

// Dot product of one weight row `w` (quant_row_bytes(wtype, cols) bytes) with one quantized activation row `a`.
float vec_dot(DType wtype, const void* w, const void* a, int64_t cols);

// Dequantizes a quantized activation row (test helper): `cols` f32 values into `dst`.
void vec_dot_dequantize_act(DType wtype, const void* a, float* dst, int64_t cols);

}  // namespace tune
