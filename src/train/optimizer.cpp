// AdamW / SGD updates, gradient norm and clipping, learning-rate schedules.
#include "train/optimizer.h"

#include <cmath>

#include "core/error.h"

namespace tune {

ParamRefs lora_param_refs(LoraAdapter& adapter) {
  ParamRefs r;
  for (auto& layer : adapter.layers)
    for (LoraWeights& w : layer)
      if (w.defined()) {
        r.params.push_back(&w.A);
        r.grads.push_back(&w.dA);
        r.params.push_back(&w.B);
        r.grads.push_back(&w.dB);
      }
  return r;
}

Optimizer::Optimizer(const OptimizerConfig& config, LoraAdapter& adapter)
    : config_(config), refs_(lora_param_refs(adapter)) {
  if (config.kind == OptimizerKind::AdamW) {
    for (Tensor* p : refs_.params) {
      m_.push_back(Tensor::zeros(DType::F32, p->shape()));
      v_.push_back(Tensor::zeros(DType::F32, p->shape()));
    }
  }
}

void Optimizer::step(double lr) {
  ++step_;
  const double wd = config_.weight_decay;
  if (config_.kind == OptimizerKind::Sgd) {
    for (size_t i = 0; i < refs_.params.size(); ++i) {
      float* p = refs_.params[i]->f32();
      const float* g = refs_.grads[i]->f32();
      for (int64_t j = 0, n = refs_.params[i]->numel(); j < n; ++j) p[j] -= float(lr * (double(g[j]) + wd * p[j]));
    }
    return;
  }
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(step_)), bc2 = 1.0 - std::pow(b2, double(step_));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  for (size_t i = 0; i < refs_.params.size(); ++i) {
    float* p = refs_.params[i]->f32();
    const float* g = refs_.grads[i]->f32();
    float* m = m_[i].f32();
    float* v = v_[i].f32();
    for (int64_t j = 0, n = refs_.params[i]->numel(); j < n; ++j) {
      p[j] = float(p[j] * (1.0 - lr * wd));
      m[j] = float(b1 * m[j] + (1.0 - b1) * g[j]);
      v[j] = float(b2 * v[j] + (1.0 - b2) * double(g[j]) * g[j]);
      const double denom = std::sqrt(double(v[j])) / bc2_sqrt + config_.eps;
      p[j] = float(p[j] - step_size * m[j] / denom);
    }
  }
}

double grad_global_norm(const ParamRefs& refs) {
  double ss = 0;
  for (const Tensor* g : refs.grads) {
    const float* d = g->f32();
    for (int64_t j = 0, n = g->numel(); j < n; ++j) ss += double(d[j]) * d[j];
  }
  return std::sqrt(ss);
}

double grad_clip(const ParamRefs& refs, double max_norm) {
  const double norm = grad_global_norm(refs);
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0) {
    for (Tensor* g : refs.grads) {
      float* d = g->f32();
      for (int64_t j = 0, n = g->numel(); j < n; ++j) d[j] = float(d[j] * coef);
    }
  }
  return norm;
}

ScheduleKind schedule_parse(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "cosine") return ScheduleKind::Cosine;
  throw ConfigError("--scheduler: unknown schedule '" + name + "'", "use constant, linear or cosine");
}

double schedule_lr(ScheduleKind kind, double base_lr, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return base_lr * double(step) / double(std::max<int64_t>(1, warmup));
  if (kind == ScheduleKind::Constant) return base_lr;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  if (kind == ScheduleKind::Linear) return base_lr * std::max(0.0, 1.0 - progress);
  return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace tune
