// Generator: prefix reuse, then one engine step per new id.
#include "infer/generate.h"

#include <algorithm>

#include "core/error.h"
#include "model/forward.h"

namespace tune {

Generator::Generator(const Model& model, const LoraAdapter* adapter, const EngineOptions& options)
    : model_(model), adapter_(adapter) {
  if (engine_supports(model.config)) engine_ = std::make_unique<Engine>(model, options, adapter);
}

void Generator::reset() {
  ids_.clear();
  if (engine_) engine_->truncate(0);
}

std::vector<float> Generator::step(std::span<const int32_t> ids) {
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  const int64_t V = model_.config.vocab_size;
  if (engine_) {
    try {
      const Tensor logits = engine_->forward(ids);
      return std::vector<float>(logits.f32(), logits.f32() + logits.numel());
    } catch (...) {
      ids_.resize(ids_.size() - ids.size());  // the engine left its cache unchanged
      throw;
    }
  }
  const Tensor logits = model_logits(model_, ids_, adapter_);
  const float* last = logits.f32() + (logits.size(0) - 1) * V;
  return std::vector<float>(last, last + V);
}

std::vector<int32_t> Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                         const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw ConfigError("generate: the prompt is empty");
  // Keep the common prefix, but always recompute at least the prompt's last id (its logits are needed).
  size_t common = 0;
  while (common < ids_.size() && common + 1 < prompt.size() && ids_[common] == prompt[common]) ++common;
  ids_.resize(common);
  if (engine_) engine_->truncate(int64_t(common));
  std::vector<float> logits = step(prompt.subspan(common));

  Sampler sampler(options.sampler);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < options.max_tokens; ++i) {
    const int32_t id = sampler.sample(logits, ids_);
    const bool stop =
        std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    if (!stop) {
      out.push_back(id);
      if (on_token) on_token(id);
    }
    // The last id sampled is not run (nothing needs its logits): a next prompt that continues with it
    // computes it.
    if (stop || i + 1 == options.max_tokens) break;
    logits = step({&id, 1});
  }
  return out;
}

}  // namespace tune
