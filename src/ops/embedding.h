// Embedding lookup: y[t] = table[ids[t]]. An id outside [0, V) is a user error naming the position.
// ids (T) i32, table (V, C) -> y (T, C)
#pragma once

#include "core/tensor.h"

namespace tune {

void embedding_fwd(const TensorView& ids, const TensorView& table, const TensorView& y);

namespace cpu {
void embedding_fwd(const int32_t* ids, const float* table, float* y, int64_t T, int64_t C);
}

// CUDA kernel (defined when built with TUNE_CUDA): ids i32, table and y on the device (each f32 or bf16). Ids are
// checked on the device: returns the first position whose id is outside [0, V) (its id in *bad_id; that row of y
// is zero), or -1. Synchronizes with the device. With bad_id null the caller has checked the ids: no check, no
// synchronization (a CUDA graph may capture it).
namespace cuda {
int64_t embedding_fwd(const int32_t* ids, const void* table, DType table_dt, void* y, DType y_dt, int64_t T, int64_t V,
                      int64_t C, int32_t* bad_id);
}  // namespace cuda

}  // namespace tune
