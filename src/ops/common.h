// Argument checks shared by the op dispatchers: shape, dtype and device agreement, with messages naming the op.
#pragma once

#include <string>

#include "core/tensor.h"

namespace tune {

inline void op_check(bool ok, const char* op, const std::string& what) {
  TUNE_CHECK(ok) << op << ": " << what;
}

inline void op_check_shape(const char* op, const char* arg, const TensorView& t, const Shape& want) {
  TUNE_CHECK(t.shape == want) << op << ": " << arg << " has shape " << t.shape.str() << ", expected " << want.str();
}

inline void op_check_f32(const char* op, const char* arg, const TensorView& t) {
  TUNE_CHECK(t.dtype == DType::F32 && t.is_contiguous())
      << op << ": " << arg << " must be contiguous f32, got " << dtype_name(t.dtype);
}

[[noreturn]] inline void op_unsupported(const char* op, const TensorView& t) {
  throw UnsupportedError(std::string(op) + ": no " + device_name(t.device) + " kernel for " + dtype_name(t.dtype),
                         "run on the CPU with --device cpu");
}

}  // namespace tune
