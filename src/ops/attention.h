// Causal scaled dot-product attention with grouped-query heads: query head h reads kv head h / (nH / nKV).
// Packed rows: `doc_start[t]` is the first position of t's document, so t attends to [doc_start[t], t]; a null
// doc_start means one document. Softmax in fp32 with the max subtracted.
// q (T, nH, d), k (T, nKV, d), v (T, nKV, d), doc_start (T) i32 or null -> o (T, nH, d)
#pragma once

#include "core/tensor.h"

namespace tune {

void attention_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& o);

namespace cpu {
void attention_fwd(const float* q, const float* k, const float* v, const int32_t* doc_start, float scale, float* o,
                   int64_t T, int64_t nH, int64_t nKV, int64_t d);
}

}  // namespace tune
