// Argument checks for the CUDA case of the op dispatchers: tensors on the device, contiguous, and float
// tensors f32 or bf16. Plain C++ (no CUDA headers), so the dispatchers compile without CUDA as well.
#pragma once

#include "ops/common.h"

namespace tune {

inline void op_check_cuda(const char* op, const char* arg, const TensorView& t) {
  TUNE_CHECK(t.device == Device::CUDA && t.is_contiguous())
      << op << ": " << arg << " must be a contiguous CUDA tensor, got one on " << device_name(t.device);
}

inline void op_check_cuda(const char* op, const char* arg, const TensorView& t, DType dtype) {
  op_check_cuda(op, arg, t);
  TUNE_CHECK(t.dtype == dtype) << op << ": " << arg << " must be " << dtype_name(dtype) << ", got "
                               << dtype_name(t.dtype);
}

// The element type of a float tensor on CUDA: f32 or bf16; any other type has no kernel (a user-facing
// error).
inline DType op_cuda_float(const char* op, const char* arg, const TensorView& t) {
  op_check_cuda(op, arg, t);
  if (t.dtype != DType::F32 && t.dtype != DType::BF16) op_unsupported(op, t);
  return t.dtype;
}

}  // namespace tune
