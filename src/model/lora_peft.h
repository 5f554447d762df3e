// LoRA adapters in PEFT's format: adapter_config.json + adapter_model.safetensors with keys
// `base_model.model.<HF module path>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r).
// Saving writes through temporary files; loading checks every tensor against the model and the config.
#pragma once

#include <string>

#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"

namespace tune {

// The PEFT key prefix of target t in layer l ("base_model.model.model.layers.3.self_attn.q_proj"). Expert targets
// live on the `experts` module, wrapped once per target parameter: with both, gate_up_proj is the inner wrapper
// ("...mlp.experts.base_layer") and down_proj the outer ("...mlp.experts").
std::string lora_peft_module(const Model& model, int64_t layer, LoraTarget t, bool both_expert_targets = true);

// The adapter's tensors (or, with `grads`, their gradients) under PEFT's keys and in PEFT's layout: experts' A
// (E, r, in) -> (E*r, in) expert-major rows, B (E, out, r) -> (out, r*E) rank-major columns.
NamedTensors lora_peft_tensors(const LoraAdapter& adapter, const Model& model, bool grads = false);

void lora_save_peft(const LoraAdapter& adapter, const Model& model, const std::string& dir,
                    const std::string& base_model_name);
// Loads DIR (adapter_config.json + adapter_model.safetensors) for `model`; allocates gradient buffers.
LoraAdapter lora_load_peft(const std::string& dir, const Model& model);

}  // namespace tune
