// Forward and backward passes of a whole model (fp32 reference on the CPU), optionally with a LoRA adapter:
// embedding -> [norm -> attention -> residual -> norm -> SwiGLU or MoE -> residual] x L -> norm -> head.
// Every block kind trains: Qwen2/2.5, Qwen3, Qwen3-MoE and Qwen3.5 (gated attention, Gated DeltaNet, shared-expert
// MoE; LoRA on in_proj_qkv/z/a/b, out_proj and the shared expert too). One straight sequence of op calls per block
// kind; every intermediate is a named tensor kept for the backward (frozen: conv1d, A_log, dt_bias, norms).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "core/rng.h"
#include "model/lora.h"
#include "model/model.h"

namespace tune {

// One row of tokens. `pos` restarts at 0 for each packed document and `doc_start[t]` is the row index of t's
// document's first token; empty spans mean one document with positions 0..T-1.
struct TokenRow {
  std::span<const int32_t> ids;
  std::span<const int32_t> pos;
  std::span<const int32_t> doc_start;
};

// Sees the input of every weight matrix multiplication the forward pass makes on the calling thread, before the
// product: x (rows, in) and the weight w ([out, in], as stored: f32 or kept quantized). A MoE expert's product
// passes expert e's [out, in] slice of the 3-D tensor (a view into it) and only the rows routed to e. Used to
// collect importance matrices (eval/imatrix); LoRA branches are not reported.
using LinearObserver = std::function<void(const Tensor& x, const Tensor& w)>;

// Installs `observer` for the calling thread while the scope lives (scopes nest; the innermost one observes).
class LinearObserverScope {
 public:
  explicit LinearObserverScope(LinearObserver observer);
  ~LinearObserverScope();
  LinearObserverScope(const LinearObserverScope&) = delete;
  LinearObserverScope& operator=(const LinearObserverScope&) = delete;

 private:
  LinearObserver observer_;
  const LinearObserver* previous_;
};

// ids (T) -> logits (T, V).
Tensor model_logits(const Model& model, std::span<const int32_t> ids, const LoraAdapter* lora = nullptr);

struct RowLoss {
  double loss_sum = 0;  // summed cross-entropy over trained positions
  int64_t trained = 0;  // positions with a target
};

// Cross-entropy of one row against `targets` (T): targets[t] is the id that should follow position t, -100 where
// nothing is trained. With `grad_scale` != 0 it also runs the backward and adds grad_scale * d(loss_sum)/d(theta)
// into the adapter's dA and dB (parameters accumulate). `dropout_rng` drives LoRA dropout (null = no dropout).
RowLoss model_loss_row(const Model& model, LoraAdapter* lora, const TokenRow& row, std::span<const int32_t> targets,
                       float grad_scale, Rng* dropout_rng);

}  // namespace tune
