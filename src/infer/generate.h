// Text generation with the model's forward pass: prompt ids -> new ids until an end-of-turn token or max_tokens,
// each token handed to a callback as it is made (streaming). This version recomputes the whole sequence per token
// (no KV cache): exact, and fast enough for the short answers of demos and tests.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "infer/sampler.h"
#include "model/lora.h"
#include "model/model.h"

namespace tune {

struct GenerateOptions {
  int64_t max_tokens = 128;
  std::vector<int32_t> stop_ids;  // e.g. <|im_end|> and <|endoftext|>
  SamplerConfig sampler;
};

// Returns the generated ids (without the prompt, without the stop token).
std::vector<int32_t> generate(const Model& model, const LoraAdapter* adapter, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token = {});

}  // namespace tune
