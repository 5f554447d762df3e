// attention: argument checks and device dispatch.
#include "ops/attention.h"

#include "ops/common.h"
#include "ops/cuda/check.h"

namespace tune {

namespace {
void check(const char* op, const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* doc_start) {
  const int64_t T = q.size(0), nH = q.size(1), d = q.size(2), nKV = k.size(1);
  op_check_shape(op, "k", k, {T, nKV, d});
  op_check_shape(op, "v", v, {T, nKV, d});
  op_check(nH % nKV == 0, op, "query heads must be a multiple of kv heads");
  if (doc_start) op_check(doc_start->dtype == DType::I32 && doc_start->numel() == T, op, "doc_start (T) i32");
  if (q.device == Device::CPU) op_check_f32(op, "q", q);
}

#ifdef TUNE_CUDA
// The CUDA case: q and every other tensor on the device with q's element type, doc_start i32 on the device.
DType check_cuda(const char* op, const TensorView& q, std::initializer_list<const TensorView*> others,
                 const TensorView* doc_start) {
  const DType dt = op_cuda_float(op, "q", q);
  for (const TensorView* t : others) op_check_cuda(op, "k/v/o or a gradient", *t, dt);
  if (doc_start) op_check_cuda(op, "doc_start", *doc_start, DType::I32);
  const int64_t d = q.size(2);
  op_check(d <= cuda::kAttentionMaxHeadDim && d * int64_t(dtype_bytes(dt, 1)) >= 8, op,
           "head dim " + std::to_string(d) + " has no CUDA kernel (needs 8 bytes to 256 elements)");
  return dt;
}
#endif
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
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = check_cuda("attention", q, {&k, &v, &o}, doc_start);
      cuda::attention_fwd(q.data, k.data, v.data, doc_start ? doc_start->ptr<int32_t>() : nullptr, scale, o.data,
                          q.size(0), q.size(1), k.size(1), q.size(2), dt);
      return;
#else
      op_unsupported("attention", q);
#endif
    }
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
    case Device::CUDA: {
#ifdef TUNE_CUDA
      const DType dt = check_cuda("attention_bwd", q, {&k, &v, &d_o, &dq, &dk, &dv}, doc_start);
      cuda::attention_bwd(q.data, k.data, v.data, doc_start ? doc_start->ptr<int32_t>() : nullptr, scale, d_o.data,
                          dq.data, dk.data, dv.data, q.size(0), q.size(1), k.size(1), q.size(2), dt);
      return;
#else
      op_unsupported("attention_bwd", q);
#endif
    }
  }
}

}  // namespace tune
