// Generation loop.
#include "infer/generate.h"

#include <algorithm>

#include "model/forward.h"

namespace tune {

std::vector<int32_t> generate(const Model& model, const LoraAdapter* adapter, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw ConfigError("generate: the prompt is empty");
  Sampler sampler(options.sampler);
  std::vector<int32_t> seq = prompt, out;
  const int64_t V = model.config.vocab_size;
  for (int64_t i = 0; i < options.max_tokens; ++i) {
    const Tensor logits = model_logits(model, seq, adapter);
    const int64_t T = logits.size(0);
    const int32_t id = sampler.sample({logits.f32() + (T - 1) * V, size_t(V)}, seq);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end()) break;
    seq.push_back(id);
    out.push_back(id);
    if (on_token) on_token(id);
  }
  return out;
}

}  // namespace tune
