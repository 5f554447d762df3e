// ModelConfig: the architecture of a Qwen checkpoint, parsed from Hugging Face config.json for qwen2, qwen3,
// qwen3_moe, qwen3_5 and qwen3_5_moe (Qwen3.5 reads its nested text_config). A model is a stack of blocks, each
// a mixer kind x an FFN kind, so new layer kinds slot in without a redesign.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/json.h"

namespace tune {

enum class Arch { Qwen2, Qwen3, Qwen3Moe, Qwen3_5, Qwen3_5Moe };
enum class MixerKind { Attention, GatedAttention, GatedDeltaNet };
enum class FfnKind { Dense, Moe };

const char* arch_name(Arch a);  // the HF model_type
const char* mixer_kind_name(MixerKind k);
const char* ffn_kind_name(FfnKind k);

struct LayerSpec {
  MixerKind mixer;
  FfnKind ffn;
};

struct ModelConfig {
  Arch arch = Arch::Qwen3;
  std::string model_type;  // as written in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t intermediate_size = 0;  // dense FFN width (0 when every layer is MoE)
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool norm_zero_centered = false;  // Qwen3.5: y = norm(x) * (1 + w)
  int64_t max_position_embeddings = 0;

  // Attention (full or gated).
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3+)
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  int64_t rotary_dim = 0;  // head_dim * partial_rotary_factor, rounded down to even
  std::vector<int64_t> mrope_section;  // Qwen3.5; text positions make it plain 1-D RoPE

  // MoE.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t shared_expert_intermediate_size = 0;  // 0 = no shared expert
  bool norm_topk_prob = false;

  // Gated DeltaNet (Qwen3.5 linear-attention layers).
  int64_t linear_num_key_heads = 0;
  int64_t linear_num_value_heads = 0;
  int64_t linear_key_head_dim = 0;
  int64_t linear_value_head_dim = 0;
  int64_t linear_conv_kernel_dim = 0;

  std::vector<LayerSpec> layers;  // one per layer

  bool has_moe() const;
  bool has_mixer(MixerKind k) const;
  // Per-token q width of a full-attention layer: nH*hd, doubled for gated attention (query + gate per head).
  int64_t q_dim(MixerKind k) const { return num_heads * head_dim * (k == MixerKind::GatedAttention ? 2 : 1); }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Parses config.json content; `source` names the file in errors.
ModelConfig model_config_from_json(const Json& j, const std::string& source);
// Reads DIR/config.json.
ModelConfig model_config_load(const std::string& model_dir);
// The config.json transformers would write for this config (used when tune creates or exports a model).
Json model_config_to_json(const ModelConfig& c);

}  // namespace tune
