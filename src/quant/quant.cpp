// Dispatch of quant.h: argument checks, one kernel call per row (rows in parallel), plain float conversions.
#include "quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/threads.h"
#include "quant/kernels.h"

namespace tune {

namespace {

using QuantizeRow = void (*)(const float*, void*, int64_t, const float*);
using DequantizeRow = void (*)(const void*, float*, int64_t);

void quantize_q8_0_row(const float* x, void* y, int64_t n, const float*) {
  quant::quantize_q8_0(x, y, n);
}

void quantize_f32_row(const float* x, void* y, int64_t n, const float*) {
  std::memcpy(y, x, size_t(n) * 4);
}
void quantize_f16_row(const float* x, void* y, int64_t n, const float*) {
  auto* h = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(x[i]);
}
void quantize_bf16_row(const float* x, void* y, int64_t n, const float*) {
  auto* h = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(x[i]);
}
void dequantize_f32_row(const void* x, float* y, int64_t n) {
  std::memcpy(y, x, size_t(n) * 4);
}
void dequantize_f16_row(const void* x, float* y, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(x);
  for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(h[i]);
}
void dequantize_bf16_row(const void* x, float* y, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(x);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(h[i]);
}

struct Kernels {
  QuantizeRow quantize = nullptr;
  DequantizeRow dequantize = nullptr;
};

Kernels kernels_of(DType type) {
  switch (type) {
    case DType::F32:
      return {quantize_f32_row, dequantize_f32_row};
    case DType::F16:
      return {quantize_f16_row, dequantize_f16_row};
    case DType::BF16:
      return {quantize_bf16_row, dequantize_bf16_row};
    case DType::Q8_0:
      return {quantize_q8_0_row, quant::dequantize_q8_0};
    case DType::Q4_0:
      return {quant::quantize_q4_0, quant::dequantize_q4_0};
    case DType::Q4_1:
      return {quant::quantize_q4_1, quant::dequantize_q4_1};
    case DType::Q5_0:
      return {quant::quantize_q5_0, quant::dequantize_q5_0};
    case DType::Q5_1:
      return {quant::quantize_q5_1, quant::dequantize_q5_1};
    case DType::Q2_K:
      return {quant::quantize_q2_k, quant::dequantize_q2_k};
    case DType::Q3_K:
      return {quant::quantize_q3_k, quant::dequantize_q3_k};
    case DType::Q4_K:
      return {quant::quantize_q4_k, quant::dequantize_q4_k};
    case DType::Q5_K:
      return {quant::quantize_q5_k, quant::dequantize_q5_k};
    case DType::Q6_K:
      return {quant::quantize_q6_k, quant::dequantize_q6_k};
    default:
      return {};
  }
}

Kernels checked_kernels(DType type, int64_t rows, int64_t cols) {
  const Kernels k = kernels_of(type);
  if (!k.quantize) {
    throw UnsupportedError(std::string("cannot quantize to ") + dtype_name(type),
                           "tune quantizes to f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 and q2_k..q6_k");
  }
  TUNE_CHECK(rows >= 0 && cols >= 0) << "rows " << rows << ", cols " << cols;
  quant_row_bytes(type, cols);  // checks the block multiple
  return k;
}

// Rows per parallel task: about 64 K elements, so small tensors stay on one thread.
int64_t min_rows_per_task(int64_t cols) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(cols, 1));
}

}  // namespace

bool quant_supported(DType type) {
  return kernels_of(type).quantize != nullptr;
}

bool quant_uses_importance(DType type) {
  return dtype_is_quantized(type) && type != DType::Q8_0;
}

size_t quant_row_bytes(DType type, int64_t cols) {
  const DTypeInfo& info = dtype_info(type);
  if (cols % info.block_size != 0) {
    throw UnsupportedError("a row of " + std::to_string(cols) + " elements cannot be stored as " + info.name +
                               " (blocks of " + std::to_string(info.block_size) + ")",
                           "use a type whose block size divides the row, e.g. q8_0, q5_0 or f16");
  }
  return size_t(cols / info.block_size) * info.type_size;
}

size_t quantize_rows(DType type, const float* src, void* dst, int64_t rows, int64_t cols,
                     const float* importance) {
  const Kernels k = checked_kernels(type, rows, cols);
  const size_t row_bytes = quant_row_bytes(type, cols);
  const float* imp = quant_uses_importance(type) ? importance : nullptr;
  if (imp) {
    for (int64_t j = 0; j < cols; ++j) {
      if (!std::isfinite(imp[j])) {
        throw ConfigError("importance value " + std::to_string(imp[j]) + " at column " + std::to_string(j) +
                              " is not finite",
                          "recompute the importance matrix");
      }
    }
  }
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          k.quantize(src + r * cols, static_cast<char*>(dst) + size_t(r) * row_bytes, cols, imp);
      },
      min_rows_per_task(cols));
  return size_t(rows) * row_bytes;
}

void dequantize_rows(DType type, const void* src, float* dst, int64_t rows, int64_t cols) {
  const Kernels k = checked_kernels(type, rows, cols);
  const size_t row_bytes = quant_row_bytes(type, cols);
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          k.dequantize(static_cast<const char*>(src) + size_t(r) * row_bytes, dst + r * cols, cols);
      },
      min_rows_per_task(cols));
}

Tensor quantize(const Tensor& x, DType type, const float* importance) {
  TUNE_CHECK(x.dtype() == DType::F32 && x.device() == Device::CPU && x.view().is_contiguous())
      << "quantize takes a contiguous CPU f32 tensor";
  const int64_t cols = x.ndim() > 0 ? x.size(-1) : 1;
  const int64_t rows = cols > 0 ? x.numel() / cols : 0;
  checked_kernels(type, rows, cols);
  Tensor out = Tensor::empty(type, x.shape());
  quantize_rows(type, x.ptr<float>(), out.data(), rows, cols, importance);
  return out;
}

Tensor dequantize(const Tensor& q) {
  TUNE_CHECK(q.device() == Device::CPU && q.view().is_contiguous())
      << "dequantize takes a contiguous CPU tensor";
  const int64_t cols = q.ndim() > 0 ? q.size(-1) : 1;
  const int64_t rows = cols > 0 ? q.numel() / cols : 0;
  Tensor out = Tensor::empty(DType::F32, q.shape());
  dequantize_rows(q.dtype(), q.data(), out.ptr<float>(), rows, cols);
  return out;
}

}  // namespace tune
