// Internal to src/quant: the per-format row kernels behind quant.h. Each quantizes or dequantizes `n`
// elements (a whole number of blocks) of one row. `weights` is the importance of each of the n elements (one
// imatrix row); null selects ggml's reference path (`quantize_row_*_ref`), non-null its importance path
// (`quantize_*` with `quant_weights`). Block structs give ggml's byte layout; f16 fields are IEEE binary16
// bits.
#pragma once

#include <cstdint>

namespace tune::quant {

void quantize_q8_0(const float* x, void* y, int64_t n);
void dequantize_q8_0(const void* x, float* y, int64_t n);

void quantize_q4_0(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q4_0(const void* x, float* y, int64_t n);
void quantize_q4_1(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q4_1(const void* x, float* y, int64_t n);
void quantize_q5_0(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q5_0(const void* x, float* y, int64_t n);
void quantize_q5_1(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q5_1(const void* x, float* y, int64_t n);

void quantize_q2_k(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q2_k(const void* x, float* y, int64_t n);
void quantize_q3_k(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q3_k(const void* x, float* y, int64_t n);
void quantize_q4_k(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q4_k(const void* x, float* y, int64_t n);
void quantize_q5_k(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q5_k(const void* x, float* y, int64_t n);
void quantize_q6_k(const float* x, void* y, int64_t n, const float* weights);
void dequantize_q6_k(const void* x, float* y, int64_t n);

}  // namespace tune::quant
