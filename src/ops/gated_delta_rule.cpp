// gated_delta_rule: argument checks and device dispatch (CPU only for now).
#include "ops/gated_delta_rule.h"

#include "ops/common.h"

namespace tune {

void gated_delta_rule_fwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& g,
                          const TensorView& beta, const TensorView* doc_start, const TensorView& o) {
  const char* op = "gated_delta_rule";
  op_check(q.shape.ndim == 3 && v.shape.ndim == 3, op, "q must be (T, nV, dk) and v (T, nV, dv)");
  const int64_t T = q.size(0), nV = q.size(1), dk = q.size(2), dv = v.size(2);
  op_check_shape(op, "k", k, {T, nV, dk});
  op_check_shape(op, "v", v, {T, nV, dv});
  op_check_shape(op, "g", g, {T, nV});
  op_check_shape(op, "beta", beta, {T, nV});
  op_check_shape(op, "o", o, {T, nV, dv});
  if (doc_start) {
    op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T && doc_start->device == q.device, op,
             "doc_start (T) i32 on q's device");
  }
  switch (q.device) {
    case Device::CPU:
      for (const TensorView* t : {&q, &k, &v, &g, &beta, &o}) op_check_f32(op, "q/k/v/g/beta/o", *t);
      cpu::gated_delta_rule_fwd(q.f32(), k.f32(), v.f32(), g.f32(), beta.f32(),
                                doc_start ? doc_start->ptr<int32_t>() : nullptr, o.f32(), T, nV, dk, dv);
      return;
    case Device::CUDA:
      op_unsupported(op, q);
  }
}

void gated_delta_rule_bwd(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& g,
                          const TensorView& beta, const TensorView* doc_start, const TensorView& dout,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv,
                          const TensorView& dg, const TensorView& dbeta) {
  const char* op = "gated_delta_rule_bwd";
  op_check(q.shape.ndim == 3 && v.shape.ndim == 3, op, "q must be (T, nV, dk) and v (T, nV, dv)");
  const int64_t T = q.size(0), nV = q.size(1), dkk = q.size(2), dvv = v.size(2);
  for (const TensorView* t : {&k, &dq, &dk}) op_check_shape(op, "k/dq/dk", *t, {T, nV, dkk});
  for (const TensorView* t : {&dout, &dv}) op_check_shape(op, "do/dv", *t, {T, nV, dvv});
  for (const TensorView* t : {&g, &beta, &dg, &dbeta}) op_check_shape(op, "g/beta/dg/dbeta", *t, {T, nV});
  if (doc_start) {
    op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T && doc_start->device == q.device, op,
             "doc_start (T) i32 on q's device");
  }
  switch (q.device) {
    case Device::CPU:
      for (const TensorView* t : {&q, &k, &v, &g, &beta, &dout, &dq, &dk, &dv, &dg, &dbeta})
        op_check_f32(op, "all tensors", *t);
      cpu::gated_delta_rule_bwd(q.f32(), k.f32(), v.f32(), g.f32(), beta.f32(),
                                doc_start ? doc_start->ptr<int32_t>() : nullptr, dout.f32(), dq.f32(),
                                dk.f32(), dv.f32(), dg.f32(), dbeta.f32(), T, nV, dkk, dvv);
      return;
    case Device::CUDA:
      op_unsupported(op, q);
  }
}

}  // namespace tune
