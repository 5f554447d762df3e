// attention: argument checks and device dispatch.
#include "ops/attention.h"

#include "ops/common.h"

namespace tune {

void attention_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& o) {
  const int64_t T = q.size(0), nH = q.size(1), d = q.size(2), nKV = k.size(1);
  op_check_shape("attention", "k", k, {T, nKV, d});
  op_check_shape("attention", "v", v, {T, nKV, d});
  op_check_shape("attention", "o", o, {T, nH, d});
  op_check(nH % nKV == 0, "attention", "query heads must be a multiple of kv heads");
  if (doc_start) op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T, "attention", "doc_start (T) i32");
  switch (q.device) {
    case Device::CPU:
      op_check_f32("attention", "q", q);
      cpu::attention_fwd(q.f32(), k.f32(), v.f32(), doc_start ? doc_start->ptr<int32_t>() : nullptr, scale, o.f32(),
                         T, nH, nKV, d);
      return;
    case Device::CUDA: op_unsupported("attention", q);
  }
}

}  // namespace tune
