// LoRA adapter weights: for each targeted linear W (out, in), y = x W^T + s * (dropout(x) A^T) B^T with
// A (r, in) and B (out, r) in fp32, s = alpha / r (or alpha / sqrt(r) with rsLoRA). Initialized as PEFT does:
// A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0. Base weights stay frozen.
// MoE experts (target "experts") carry one LoRA per expert on the fused gate_up (2I, H) and on down (H, I), as
// PEFT's target_parameters does: A (E, r, in), B (E, out, r); the gate rows of B are [0, I), the up rows [I, 2I).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace tune {

// Qwen3.5 adds the Gated DeltaNet projections (linear_attn in_proj_qkv, in_proj_z, out_proj, in_proj_a,
// in_proj_b) and the MoE shared expert's gate/up/down_proj (mlp.shared_expert.*), appended after the experts.
enum class LoraTarget : int {
  Q, K, V, O, Gate, Up, Down, ExpertsGateUp, ExpertsDown,
  LinQkv, LinZ, LinOut, LinA, LinB, SharedGate, SharedUp, SharedDown
};
constexpr int kLoraTargets = 17;
inline bool lora_target_is_expert(LoraTarget t) {
  return t == LoraTarget::ExpertsGateUp || t == LoraTarget::ExpertsDown;
}

// Short names as on the command line ("q", "gate", "experts", "qkv", "shared_gate") and Hugging Face module or
// parameter names ("q_proj", "gate_proj", "gate_up_proj", "in_proj_qkv"; the shared expert's are gate/up/down_proj).
const char* lora_target_short(LoraTarget t);
const char* lora_target_module(LoraTarget t);
// Parses "q,k,v,o,gate,up,down,experts,qkv,z,out,a,b,shared" (module names like "q_proj" are accepted too and select
// every target of that module name, so "gate_proj" also selects the shared expert's, as PEFT's suffix match does;
// "experts" selects both expert targets, "shared" the three shared-expert ones, "all" every target).
std::array<bool, kLoraTargets> lora_targets_parse(const std::string& list);

struct LoraConfig {
  int64_t rank = 16;
  double alpha = 32;
  double dropout = 0;
  bool rslora = false;
  // Default: the seven attention/FFN projections (add qkv,z,out for Qwen3.5's Gated DeltaNet layers).
  std::array<bool, kLoraTargets> targets{true, true, true, true, true, true, true};
  double scale() const;
};

struct LoraWeights {
  Tensor A, B;    // (r, in), (out, r), f32; experts: (E, r, in), (E, out, r)
  Tensor dA, dB;  // gradients, same shapes
  bool defined() const { return A.defined(); }
};

struct LoraAdapter {
  LoraConfig config;
  std::vector<std::array<LoraWeights, kLoraTargets>> layers;  // one per model layer; absent targets undefined

  // Allocates A, B and their gradients for every target the model has, PEFT-initialized from `seed`.
  static LoraAdapter init(const ModelConfig& model, const LoraConfig& config, uint64_t seed);
  void zero_grad();
  int64_t num_parameters() const;
  // The (in, out) of target t in layer l of `model` (per expert for the expert targets), or {0, 0} when the layer
  // has no such linear.
  static std::pair<int64_t, int64_t> target_shape(const ModelConfig& model, int64_t layer, LoraTarget t);
};

}  // namespace tune
