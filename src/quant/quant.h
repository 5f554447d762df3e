// Quantization of f32 rows into ggml's block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) and back,
// plus the plain conversions to F32/F16/BF16. The bytes equal ggml's: without an importance vector those of
// `quantize_row_<type>_ref`, with one those of `quantize_<type>(…, quant_weights)` — what llama-quantize
// writes with and without --imatrix (docs/quant_check.md records the byte-for-byte check). Depends on core
// only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace tune {

// True for the types quantize_rows can produce (the block types above, F32, F16, BF16).
bool quant_supported(DType type);
// True for the types whose result depends on an importance vector (every block type except Q8_0).
bool quant_uses_importance(DType type);

// Bytes of one row of `cols` elements. UnsupportedError when cols is not a multiple of the type's block size.
size_t quant_row_bytes(DType type, int64_t cols);

// Quantizes `rows` rows of `cols` contiguous f32 values into `dst` (rows · quant_row_bytes bytes) and returns
// the bytes written. `importance` is null or `cols` non-negative finite weights shared by every row (one
// imatrix vector: the mean of x² of the inputs each column sees); a 3-D expert tensor passes one slice per
// expert. F16 rounds to nearest even (NaN → quiet NaN), BF16 as ggml (nearest even, NaN → quiet NaN), F32
// copies. Rows run in parallel; the result does not depend on the number of threads. Errors: UnsupportedError
// (type, cols not a multiple of the block size), ConfigError (non-finite importance).
size_t quantize_rows(DType type, const float* src, void* dst, int64_t rows, int64_t cols,
                     const float* importance = nullptr);

// Inverse of quantize_rows for the same types: `rows` rows of `cols` values into f32 `dst`.
void dequantize_rows(DType type, const void* src, float* dst, int64_t rows, int64_t cols);

// Tensor forms: `x` is a contiguous CPU f32 tensor whose last dimension is the row; the result has x's shape
// and `type`. dequantize returns f32 of q's shape.
Tensor quantize(const Tensor& x, DType type, const float* importance = nullptr);
Tensor dequantize(const Tensor& q);

}  // namespace tune
