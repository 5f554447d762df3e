// Preset shapes, written as the config.json fields of the released checkpoints (see docs/presets.md for sources).
#include "model/presets.h"

#include "core/error.h"

namespace tune {

namespace {

struct Preset {
  const char* name;
  const char* config;  // config.json text
};

// Qwen3.5 shares head_dim 256, 16 linear key heads of 128, rope 1e7 with partial 0.25 and vocab 248320.
#define QWEN35_COMMON                                                                                          \
  "\"head_dim\":256,\"linear_num_key_heads\":16,\"linear_key_head_dim\":128,\"linear_value_head_dim\":128,"   \
  "\"linear_conv_kernel_dim\":4,\"vocab_size\":248320,\"rms_norm_eps\":1e-6,\"full_attention_interval\":4,"    \
  "\"max_position_embeddings\":262144,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":10000000," \
  "\"partial_rotary_factor\":0.25,\"mrope_section\":[11,11,10],\"mrope_interleaved\":true}"

const Preset kPresets[] = {
    {"tiny-qwen3",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":128,"num_hidden_layers":4,"num_attention_heads":4,
         "num_key_value_heads":2,"head_dim":32,"intermediate_size":384,"rms_norm_eps":1e-6,"tie_word_embeddings":true,
         "max_position_embeddings":4096,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})"},
    {"qwen2.5-0.5b",
     R"({"model_type":"qwen2","vocab_size":151936,"hidden_size":896,"num_hidden_layers":24,"num_attention_heads":14,
         "num_key_value_heads":2,"intermediate_size":4864,"rms_norm_eps":1e-6,"tie_word_embeddings":true,
         "max_position_embeddings":32768,"rope_theta":1000000.0})"},
    {"qwen2.5-7b",
     R"({"model_type":"qwen2","vocab_size":152064,"hidden_size":3584,"num_hidden_layers":28,"num_attention_heads":28,
         "num_key_value_heads":4,"intermediate_size":18944,"rms_norm_eps":1e-6,"tie_word_embeddings":false,
         "max_position_embeddings":32768,"rope_theta":1000000.0})"},
    {"qwen3-0.6b",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,"num_hidden_layers":28,"num_attention_heads":16,
         "num_key_value_heads":8,"head_dim":128,"intermediate_size":3072,"rms_norm_eps":1e-6,
         "tie_word_embeddings":true,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3-1.7b",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":2048,"num_hidden_layers":28,"num_attention_heads":16,
         "num_key_value_heads":8,"head_dim":128,"intermediate_size":6144,"rms_norm_eps":1e-6,
         "tie_word_embeddings":true,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3-4b",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":2560,"num_hidden_layers":36,"num_attention_heads":32,
         "num_key_value_heads":8,"head_dim":128,"intermediate_size":9728,"rms_norm_eps":1e-6,
         "tie_word_embeddings":true,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3-8b",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":4096,"num_hidden_layers":36,"num_attention_heads":32,
         "num_key_value_heads":8,"head_dim":128,"intermediate_size":12288,"rms_norm_eps":1e-6,
         "tie_word_embeddings":false,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3-14b",
     R"({"model_type":"qwen3","vocab_size":151936,"hidden_size":5120,"num_hidden_layers":40,"num_attention_heads":40,
         "num_key_value_heads":8,"head_dim":128,"intermediate_size":17408,"rms_norm_eps":1e-6,
         "tie_word_embeddings":false,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3-30b-a3b",
     R"({"model_type":"qwen3_moe","vocab_size":151936,"hidden_size":2048,"num_hidden_layers":48,
         "num_attention_heads":32,"num_key_value_heads":4,"head_dim":128,"intermediate_size":6144,
         "moe_intermediate_size":768,"num_experts":128,"num_experts_per_tok":8,"norm_topk_prob":true,
         "rms_norm_eps":1e-6,"tie_word_embeddings":false,"max_position_embeddings":40960,"rope_theta":1000000})"},
    {"qwen3.5-0.8b",
     R"({"model_type":"qwen3_5","tie_word_embeddings":true,"text_config":{"hidden_size":1024,"num_hidden_layers":24,
         "num_attention_heads":8,"num_key_value_heads":2,"intermediate_size":3584,"linear_num_value_heads":16,)"
     QWEN35_COMMON "}}"},
    {"qwen3.5-2b",
     R"({"model_type":"qwen3_5","tie_word_embeddings":true,"text_config":{"hidden_size":2048,"num_hidden_layers":24,
         "num_attention_heads":8,"num_key_value_heads":2,"intermediate_size":6144,"linear_num_value_heads":16,)"
     QWEN35_COMMON "}}"},
    {"qwen3.5-4b",
     R"({"model_type":"qwen3_5","tie_word_embeddings":true,"text_config":{"hidden_size":2560,"num_hidden_layers":32,
         "num_attention_heads":16,"num_key_value_heads":4,"intermediate_size":9216,"linear_num_value_heads":32,)"
     QWEN35_COMMON "}}"},
    {"qwen3.5-9b",
     R"({"model_type":"qwen3_5","tie_word_embeddings":false,"text_config":{"hidden_size":4096,"num_hidden_layers":32,
         "num_attention_heads":16,"num_key_value_heads":4,"intermediate_size":12288,"linear_num_value_heads":32,)"
     QWEN35_COMMON "}}"},
    {"qwen3.5-27b",
     R"({"model_type":"qwen3_5","tie_word_embeddings":false,"text_config":{"hidden_size":5120,"num_hidden_layers":64,
         "num_attention_heads":24,"num_key_value_heads":4,"intermediate_size":17408,"linear_num_value_heads":48,)"
     QWEN35_COMMON "}}"},
    {"qwen3.5-35b-a3b",
     R"({"model_type":"qwen3_5_moe","tie_word_embeddings":false,"text_config":{"hidden_size":2048,
         "num_hidden_layers":40,"num_attention_heads":16,"num_key_value_heads":2,"moe_intermediate_size":512,
         "num_experts":256,"num_experts_per_tok":8,"shared_expert_intermediate_size":512,
         "linear_num_value_heads":32,)" QWEN35_COMMON "}}"},
};

}  // namespace

ModelConfig preset_config(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name == p.name) return model_config_from_json(Json::parse(p.config), std::string("preset ") + p.name);
  }
  std::string known;
  for (const Preset& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw ConfigError("unknown preset '" + name + "'", "known presets: " + known);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> v;
  for (const Preset& p : kPresets) v.push_back(p.name);
  return v;
}

}  // namespace tune
