// Next-token sampling from logits: repetition penalty (as transformers: divide positive logits, multiply
// negative ones, for tokens already seen), temperature, top-k, top-p (nucleus), min-p; temperature 0 = greedy
// (argmax). Only as much of the vocabulary is sorted as the filters need.
#pragma once

#include <cstdint>
#include <span>

#include "core/rng.h"

namespace tune {

struct SamplerConfig {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off; keeps tokens with p >= min_p * p_max
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& config) : config_(config), rng_(config.seed) {}
  // logits (V); `history` are the ids so far (for the repetition penalty).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplerConfig config_;
  Rng rng_;
};

}  // namespace tune
