// Text generation over the inference engine: a Generator holds one sequence (the engine's KV cache and the
// ids in it). generate() makes the sequence equal a given prompt, reusing the longest common prefix already
// in the cache (a chat turn re-renders the whole conversation and only its new tail is computed), then
// samples new ids one decode step at a time, handing each to a callback as it is made (streaming).
// Architectures the engine does not run (Qwen3.5's gated attention / Gated DeltaNet) fall back to recomputing
// the whole sequence per token with the reference forward (model_logits).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "infer/engine.h"
#include "infer/sampler.h"
#include "model/lora.h"
#include "model/model.h"

namespace tune {

struct GenerateOptions {
  int64_t max_tokens = 128;
  std::vector<int32_t> stop_ids;  // e.g. <|im_end|> and <|endoftext|>
  SamplerConfig sampler;
};

class Generator {
 public:
  // `model` and `adapter` must outlive the generator.
  Generator(const Model& model, const LoraAdapter* adapter = nullptr, const EngineOptions& options = {});

  // Sets the sequence to `prompt` (non-empty) and generates up to max_tokens ids after it, stopping at a stop
  // id (neither returned nor passed to on_token). The sampler is seeded afresh from options.sampler.seed on
  // every call; its repetition penalty sees the whole sequence.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                const std::function<void(int32_t)>& on_token = {});

  // The ids in the sequence's cache: the last prompt and the generated ids except the last one sampled.
  const std::vector<int32_t>& ids() const { return ids_; }
  void reset();

 private:
  // Makes the sequence end with `ids` (appending them) and returns the logits after its last id (V).
  std::vector<float> step(std::span<const int32_t> ids);

  const Model& model_;
  const LoraAdapter* adapter_;
  std::unique_ptr<Engine> engine_;  // null: the reference forward recomputes the sequence
  std::vector<int32_t> ids_;
};

}  // namespace tune
