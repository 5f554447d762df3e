// Optimizers over the LoRA parameters (fp32 masters): AdamW with fp32 moments exactly as torch.optim.AdamW
// (decoupled weight decay, bias-corrected moments), and SGD (weight decay added to the gradient, as torch.optim.SGD).
// Also the global gradient norm and clipping as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <string>
#include <vector>

#include "model/lora.h"

namespace tune {

enum class OptimizerKind { AdamW, Sgd };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

// Parameters and gradients as flat lists, in the adapter's fixed order (layer, target, A then B).
struct ParamRefs {
  std::vector<Tensor*> params, grads;
};
ParamRefs lora_param_refs(LoraAdapter& adapter);

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& config, LoraAdapter& adapter);
  // One update with learning rate `lr`; increments the step count.
  void step(double lr);
  int64_t steps() const { return step_; }
  const OptimizerConfig& config() const { return config_; }
  // First and second moments (AdamW only), aligned with lora_param_refs order; for checkpoints.
  std::vector<Tensor>& m() { return m_; }
  std::vector<Tensor>& v() { return v_; }
  void set_steps(int64_t s) { step_ = s; }

 private:
  OptimizerConfig config_;
  ParamRefs refs_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

// sqrt(sum of squares) over all gradients, accumulated in double.
double grad_global_norm(const ParamRefs& refs);
// Scales gradients by max_norm / (norm + 1e-6) when that is below 1; returns the norm before clipping.
double grad_clip(const ParamRefs& refs, double max_norm);

enum class ScheduleKind { Constant, Linear, Cosine };
ScheduleKind schedule_parse(const std::string& name);
// Learning rate for optimizer step `step` (0-based) of `total`, after `warmup` linear warmup steps, as
// transformers' get_{constant,linear,cosine}_schedule_with_warmup.
double schedule_lr(ScheduleKind kind, double base_lr, int64_t step, int64_t warmup, int64_t total);

}  // namespace tune
