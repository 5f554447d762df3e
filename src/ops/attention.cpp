// attention: argument checks and device dispatch.
#include "ops/attention.h"

#include "ops/common.h"

namespace tune {

namespace {
void check(const char* op, const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start) {
  const int64_t T = q.size(0), nH = q.size(1), d = q.size(2), nKV = k.size(1);
  op_check_shape(op, "k", k, {T, nKV, d});
  op_check_shape(op, "v", v, {T, nKV, d});
  op_check(nH % nKV == 0, op, "query heads must be a multiple of kv heads");
  if (doc_start) op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T, op, "doc_start (T) i32");
  op_check_f32(op, "q", q);
}
}  // namespace

void attention_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& o) {
  check("attention", q, k, v, doc_start);
  op_check_shape("attention", "o", o, q.shape);
  switch (q.device) {
    case Device::CPU:
      cpu::attention_fwd(q.f32(), k.f32(), v.f32(), doc_start ? doc_start->ptr<int32_t>() : nullptr, scale, o.f32(),
                         q.size(0), q.size(1), k.size(1), q.size(2));
      return;
    case Device::CUDA: op_unsupported("attention", q);
  }
}

void attention_bwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start,
                   float scale, const TensorView& d_o, const TensorView& dq, const TensorView& dk,
                   const TensorView& dv) {
  check("attention_bwd", q, k, v, doc_start);
  op_check_shape("attention_bwd", "do", d_o, q.shape);
  op_check_shape("attention_bwd", "dq", dq, q.shape);
  op_check_shape("attention_bwd", "dk", dk, k.shape);
  op_check_shape("attention_bwd", "dv", dv, v.shape);
  switch (q.device) {
    case Device::CPU:
      cpu::attention_bwd(q.f32(), k.f32(), v.f32(), doc_start ? doc_start->ptr<int32_t>() : nullptr, scale,
                         d_o.f32(), dq.f32(), dk.f32(), dv.f32(), q.size(0), q.size(1), k.size(1), q.size(2));
      return;
    case Device::CUDA: op_unsupported("attention_bwd", q);
  }
}

}  // namespace tune
