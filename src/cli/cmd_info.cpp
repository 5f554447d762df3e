// tune info MODEL_DIR [--json]: what a checkpoint is, read from config.json and the safetensors headers only.
#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/model.h"

namespace tune::cli {

namespace {

std::string human(int64_t n) {
  char buf[32];
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2fM", double(n) / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.2fK", double(n) / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", (long long)n);
  return buf;
}

std::string layer_kind(const LayerSpec& l) { return std::string(mixer_kind_name(l.mixer)) + "+" + ffn_kind_name(l.ffn); }

// Runs of equal layer kinds: "0-2 gated_deltanet+swiglu, 3 gated_attention+swiglu, ...".
std::string layer_runs(const ModelConfig& c) {
  std::ostringstream os;
  size_t i = 0;
  while (i < c.layers.size()) {
    size_t j = i;
    while (j + 1 < c.layers.size() && layer_kind(c.layers[j + 1]) == layer_kind(c.layers[i])) ++j;
    os << (i ? ", " : "") << i;
    if (j > i) os << "-" << j;
    os << " " << layer_kind(c.layers[i]);
    i = j + 1;
  }
  return os.str();
}

}  // namespace

int cmd_info(int argc, char** argv) {
  Args a("info", argc, argv, {}, {"--json"});
  if (a.positionals().size() != 1) throw ConfigError("tune info: give one MODEL_DIR", "tune info path/to/model");
  const Model m = model_load(a.positionals()[0], DType::F32, Device::CPU, /*with_data=*/false);
  const ModelConfig& c = m.config;
  const LoadReport& r = m.report;
  const int64_t lm_params = m.num_parameters();
  const int64_t total = lm_params + r.skipped_params;

  if (a.has("--json")) {
    Json j = {{"model", r.source},
              {"model_type", c.model_type},
              {"num_layers", c.num_layers},
              {"layers", Json::array()},
              {"hidden_size", c.hidden_size},
              {"vocab_size", c.vocab_size},
              {"num_heads", c.num_heads},
              {"num_kv_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"intermediate_size", c.intermediate_size},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"num_experts", c.num_experts},
              {"num_experts_per_tok", c.num_experts_per_tok},
              {"experts_layout", r.experts_layout},
              {"num_parameters", total},
              {"language_model_parameters", lm_params},
              {"skipped_parameters", r.skipped_params},
              {"dtypes", r.dtype_params},
              {"unused_tensors", r.unused}};
    for (const LayerSpec& l : c.layers) j["layers"].push_back(layer_kind(l));
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model:          %s\n", r.source.c_str());
  std::printf("architecture:   %s\n", c.model_type.c_str());
  std::printf("layers:         %lld (%s)\n", (long long)c.num_layers, layer_runs(c).c_str());
  std::printf("hidden size:    %lld\n", (long long)c.hidden_size);
  std::printf("attention:      %lld heads, %lld kv heads, head_dim %lld%s%s\n", (long long)c.num_heads,
              (long long)c.num_kv_heads, (long long)c.head_dim, c.attention_bias ? ", qkv bias" : "",
              c.qk_norm ? ", qk-norm" : "");
  std::printf("rope:           theta %g, rotary dims %lld of %lld\n", c.rope_theta, (long long)c.rotary_dim,
              (long long)c.head_dim);
  if (c.intermediate_size > 0) std::printf("ffn:            swiglu %lld\n", (long long)c.intermediate_size);
  if (c.has_moe()) {
    std::printf("moe:            %lld experts, top %lld, expert ffn %lld%s, %s%s\n", (long long)c.num_experts,
                (long long)c.num_experts_per_tok, (long long)c.moe_intermediate_size,
                c.norm_topk_prob ? ", renormalized top-k" : "", r.experts_layout.c_str(),
                c.shared_expert_intermediate_size ? ", shared expert" : "");
  }
  if (c.has_mixer(MixerKind::GatedDeltaNet)) {
    std::printf("gated deltanet: %lld key heads x %lld, %lld value heads x %lld, conv %lld\n",
                (long long)c.linear_num_key_heads, (long long)c.linear_key_head_dim,
                (long long)c.linear_num_value_heads, (long long)c.linear_value_head_dim,
                (long long)c.linear_conv_kernel_dim);
  }
  std::printf("vocab:          %lld, %s embeddings\n", (long long)c.vocab_size,
              c.tie_word_embeddings ? "tied" : "untied");
  std::printf("parameters:     %lld (%s)\n", (long long)total, human(total).c_str());
  if (r.skipped_params > 0) {
    std::printf("  language model %lld, skipped %lld in %lld tensors (vision tower, MTP head)\n", (long long)lm_params,
                (long long)r.skipped_params, (long long)r.skipped_tensors);
  }
  std::string dt;
  for (const auto& [name, n] : r.dtype_params) dt += (dt.empty() ? "" : ", ") + name + " " + human(n);
  std::printf("dtypes:         %s\n", dt.c_str());
  if (!r.unused.empty())
    std::printf("unused tensors: %zu (first: %s)\n", r.unused.size(), r.unused.front().c_str());
  return 0;
}

}  // namespace tune::cli
