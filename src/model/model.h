// Model = config + weights, loaded from a Hugging Face directory (config.json + safetensors) or made from a config
// with seeded random weights; saved back in Hugging Face layout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace tune {

struct LoadReport {
  std::string source;
  std::string hf_prefix;                    // "model." or "model.language_model."
  std::string experts_layout;               // "per-expert", "fused" or "" (no MoE)
  std::map<std::string, int64_t> dtype_params;  // checkpoint dtype -> parameters loaded from it
  int64_t skipped_tensors = 0;              // vision tower / MTP head, not used by text work
  int64_t skipped_params = 0;
  std::vector<std::string> unused;          // other checkpoint tensors no spec consumed
};

struct Model {
  ModelConfig config;
  ModelWeights weights;
  LoadReport report;

  // Parameters of the language model (tied embeddings counted once).
  int64_t num_parameters() const;
};

// Loads DIR (config.json + model.safetensors or a sharded index). Weights are converted to `dtype` on `device`.
// Missing tensors, wrong shapes and non-float dtypes are errors naming the tensor and file. With
// `with_data` false only the headers are checked and the weights stay undefined (for `tune info`).
Model model_load(const std::string& dir, DType dtype = DType::F32, Device device = Device::CPU,
                 bool with_data = true);

// Seeded random weights for `config` (matrices ~ N(0, std), norms ~ 1 + N(0, std), biases ~ N(0, std)).
Model model_random(const ModelConfig& config, uint64_t seed, float std = 0.02f);

// Writes config.json and safetensors in Hugging Face layout (sharded above `max_shard_bytes`).
void model_save_hf(const Model& model, const std::string& dir, DType dtype = DType::BF16,
                   size_t max_shard_bytes = size_t(5) << 30);

}  // namespace tune
