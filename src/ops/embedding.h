// Embedding lookup: y[t] = table[ids[t]]. An id outside [0, V) is a user error naming the position.
// ids (T) i32, table (V, C) -> y (T, C)
#pragma once

#include "core/tensor.h"

namespace tune {

void embedding_fwd(const TensorView& ids, const TensorView& table, const TensorView& y);

namespace cpu {
void embedding_fwd(const int32_t* ids, const float* table, float* y, int64_t T, int64_t C);
}

}  // namespace tune
