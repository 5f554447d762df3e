// config.json parsing. Defaults follow the transformers config classes where a field may be omitted; fields
// without a sensible default are required and their absence is an error naming the field.
#include "model/config.h"

#include <filesystem>

#include "core/error.h"

namespace tune {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Qwen3Moe: return "qwen3_moe";
    case Arch::Qwen3_5: return "qwen3_5";
    case Arch::Qwen3_5Moe: return "qwen3_5_moe";
  }
  return "?";
}

const char* mixer_kind_name(MixerKind k) {
  switch (k) {
    case MixerKind::Attention: return "attention";
    case MixerKind::GatedAttention: return "gated_attention";
    case MixerKind::GatedDeltaNet: return "gated_deltanet";
  }
  return "?";
}

const char* ffn_kind_name(FfnKind k) { return k == FfnKind::Dense ? "swiglu" : "moe"; }

bool ModelConfig::has_moe() const {
  for (const LayerSpec& l : layers)
    if (l.ffn == FfnKind::Moe) return true;
  return false;
}

bool ModelConfig::has_mixer(MixerKind k) const {
  for (const LayerSpec& l : layers)
    if (l.mixer == k) return true;
  return false;
}

namespace {

const char* kConfigHint = "is this the config.json of a Qwen2/Qwen3/Qwen3-MoE/Qwen3.5 checkpoint?";

// Typed access to one JSON object with errors that name the file and the field.
class Fields {
 public:
  Fields(const Json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const char* name) const { return j_.contains(name) && !j_[name].is_null(); }
  std::string where(const char* name) const { return source_ + ": field '" + prefix_ + name + "'"; }

  int64_t req_int(const char* name) const {
    if (!has(name)) throw ConfigError(where(name) + " is required but missing", kConfigHint);
    return as_int(name);
  }
  int64_t opt_int(const char* name, int64_t def) const { return has(name) ? as_int(name) : def; }
  double opt_num(const char* name, double def) const {
    if (!has(name)) return def;
    if (!j_[name].is_number()) throw ConfigError(where(name) + " must be a number, got " + j_[name].dump());
    return j_[name].get<double>();
  }
  bool opt_bool(const char* name, bool def) const {
    if (!has(name)) return def;
    if (!j_[name].is_boolean()) throw ConfigError(where(name) + " must be true or false, got " + j_[name].dump());
    return j_[name].get<bool>();
  }
  std::string opt_str(const char* name, const std::string& def) const {
    if (!has(name)) return def;
    if (!j_[name].is_string()) throw ConfigError(where(name) + " must be a string, got " + j_[name].dump());
    return j_[name].get<std::string>();
  }
  std::vector<int64_t> opt_int_list(const char* name) const {
    std::vector<int64_t> v;
    if (!has(name)) return v;
    if (!j_[name].is_array()) throw ConfigError(where(name) + " must be a list of integers");
    for (const Json& x : j_[name]) {
      if (!x.is_number_integer()) throw ConfigError(where(name) + " must be a list of integers");
      v.push_back(x.get<int64_t>());
    }
    return v;
  }
  const Json& raw(const char* name) const { return j_[name]; }

 private:
  int64_t as_int(const char* name) const {
    const Json& v = j_[name];
    if (!v.is_number_integer()) throw ConfigError(where(name) + " must be an integer, got " + v.dump());
    return v.get<int64_t>();
  }

  const Json& j_;
  std::string source_;
  std::string prefix_;
};

void require_positive(const Fields& f, const char* name, int64_t v) {
  if (v <= 0) throw ConfigError(f.where(name) + " must be positive, got " + std::to_string(v));
}

// RoPE settings from `rope_parameters` (transformers 5) or the older `rope_theta` + `rope_scaling`.
void parse_rope(const Fields& f, const std::string& source, const std::string& prefix, ModelConfig& c) {
  c.rope_theta = f.opt_num("rope_theta", c.rope_theta);
  c.partial_rotary_factor = f.opt_num("partial_rotary_factor", c.partial_rotary_factor);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!f.has(key)) continue;
    const Json& rp = f.raw(key);
    if (!rp.is_object()) throw ConfigError(f.where(key) + " must be an object");
    Fields r(rp, source, prefix + key + ".");
    const std::string type = r.opt_str("rope_type", r.opt_str("type", "default"));
    if (type != "default") {
      throw UnsupportedError(r.where("rope_type") + " is '" + type + "'; tune supports 'default' RoPE",
                             "remove the rope scaling from config.json to train at the native context length");
    }
    c.rope_theta = r.opt_num("rope_theta", c.rope_theta);
    c.partial_rotary_factor = r.opt_num("partial_rotary_factor", c.partial_rotary_factor);
    if (r.has("mrope_section")) c.mrope_section = r.opt_int_list("mrope_section");
  }
}

}  // namespace

ModelConfig model_config_from_json(const Json& root, const std::string& source) {
  if (!root.is_object()) throw ConfigError(source + ": not a JSON object", kConfigHint);
  Fields top(root, source);
  const std::string model_type = top.opt_str("model_type", "");
  if (model_type.empty()) throw ConfigError(top.where("model_type") + " is required but missing", kConfigHint);

  ModelConfig c;
  c.model_type = model_type;
  if (model_type == "qwen2") {
    c.arch = Arch::Qwen2;
  } else if (model_type == "qwen3") {
    c.arch = Arch::Qwen3;
  } else if (model_type == "qwen3_moe") {
    c.arch = Arch::Qwen3Moe;
  } else if (model_type == "qwen3_5" || model_type == "qwen3_5_text") {
    c.arch = Arch::Qwen3_5;
  } else if (model_type == "qwen3_5_moe" || model_type == "qwen3_5_moe_text") {
    c.arch = Arch::Qwen3_5Moe;
  } else {
    throw UnsupportedError(top.where("model_type") + " is '" + model_type + "', which tune does not support",
                           "supported: qwen2, qwen3, qwen3_moe, qwen3_5, qwen3_5_moe");
  }
  const bool qwen35 = c.arch == Arch::Qwen3_5 || c.arch == Arch::Qwen3_5Moe;

  // Qwen3.5 checkpoints are vision-language models: the language model's fields live in text_config.
  const Json* text = &root;
  std::string prefix;
  if (qwen35 && root.contains("text_config")) {
    if (!root["text_config"].is_object()) throw ConfigError(top.where("text_config") + " must be an object");
    text = &root["text_config"];
    prefix = "text_config.";
  }
  Fields f(*text, source, prefix);

  c.vocab_size = f.req_int("vocab_size");
  c.hidden_size = f.req_int("hidden_size");
  c.num_layers = f.req_int("num_hidden_layers");
  c.num_heads = f.req_int("num_attention_heads");
  require_positive(f, "vocab_size", c.vocab_size);
  require_positive(f, "hidden_size", c.hidden_size);
  require_positive(f, "num_hidden_layers", c.num_layers);
  require_positive(f, "num_attention_heads", c.num_heads);
  c.num_kv_heads = f.opt_int("num_key_value_heads", c.num_heads);
  require_positive(f, "num_key_value_heads", c.num_kv_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    throw ConfigError(f.where("num_attention_heads") + " (" + std::to_string(c.num_heads) +
                      ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
  }
  // transformers' Qwen3/Qwen3.5 config classes default head_dim to 128/256; Qwen2 derives it.
  const int64_t head_dim_default = c.arch == Arch::Qwen2 ? c.hidden_size / c.num_heads : qwen35 ? 256 : 128;
  c.head_dim = f.opt_int("head_dim", head_dim_default);
  require_positive(f, "head_dim", c.head_dim);
  c.rms_norm_eps = f.opt_num("rms_norm_eps", 1e-6);
  c.max_position_embeddings = f.opt_int("max_position_embeddings", 32768);
  // tie_word_embeddings sits at the top level of Qwen3.5's composite config.
  c.tie_word_embeddings = top.opt_bool("tie_word_embeddings", f.opt_bool("tie_word_embeddings", false));
  c.attention_bias = c.arch == Arch::Qwen2 ? true : f.opt_bool("attention_bias", false);
  c.qk_norm = c.arch != Arch::Qwen2;
  c.norm_zero_centered = qwen35;
  const std::string act = f.opt_str("hidden_act", "silu");
  if (act != "silu") throw UnsupportedError(f.where("hidden_act") + " is '" + act + "'; Qwen models use 'silu'");

  parse_rope(f, source, prefix, c);
  if (!(c.partial_rotary_factor > 0.0 && c.partial_rotary_factor <= 1.0))
    throw ConfigError(f.where("partial_rotary_factor") + " must be in (0, 1]");
  c.rotary_dim = int64_t(double(c.head_dim) * c.partial_rotary_factor) / 2 * 2;

  if (f.opt_bool("use_sliding_window", false)) {
    throw UnsupportedError(f.where("use_sliding_window") + " is true; tune supports full attention only",
                           "Qwen releases ship with use_sliding_window false");
  }

  // FFN kinds. MoE layers follow transformers' rule: not in mlp_only_layers and (i+1) % decoder_sparse_step == 0.
  const bool moe_arch = c.arch == Arch::Qwen3Moe || c.arch == Arch::Qwen3_5Moe;
  std::vector<int64_t> mlp_only = f.opt_int_list("mlp_only_layers");
  const int64_t sparse_step = f.opt_int("decoder_sparse_step", 1);
  if (moe_arch) {
    // transformers 5 writes num_local_experts for qwen3_moe; released checkpoints write num_experts.
    c.num_experts = f.has("num_local_experts") && !f.has("num_experts") ? f.req_int("num_local_experts")
                                                                         : f.req_int("num_experts");
    c.num_experts_per_tok = f.req_int("num_experts_per_tok");
    c.moe_intermediate_size = f.req_int("moe_intermediate_size");
    require_positive(f, "num_experts", c.num_experts);
    require_positive(f, "moe_intermediate_size", c.moe_intermediate_size);
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_experts)
      throw ConfigError(f.where("num_experts_per_tok") + " must be in [1, num_experts]");
    if (sparse_step <= 0) throw ConfigError(f.where("decoder_sparse_step") + " must be positive");
    // Qwen3.5-MoE always renormalizes the top-k weights and has a sigmoid-gated shared expert.
    c.norm_topk_prob = c.arch == Arch::Qwen3_5Moe ? true : f.opt_bool("norm_topk_prob", false);
    c.shared_expert_intermediate_size =
        c.arch == Arch::Qwen3_5Moe ? f.req_int("shared_expert_intermediate_size") : 0;
  }

  // Mixer kinds: Qwen3.5 interleaves Gated DeltaNet and gated attention by layer_types.
  std::vector<MixerKind> mixers(size_t(c.num_layers), MixerKind::Attention);
  if (qwen35) {
    c.linear_num_key_heads = f.req_int("linear_num_key_heads");
    c.linear_num_value_heads = f.req_int("linear_num_value_heads");
    c.linear_key_head_dim = f.req_int("linear_key_head_dim");
    c.linear_value_head_dim = f.req_int("linear_value_head_dim");
    c.linear_conv_kernel_dim = f.opt_int("linear_conv_kernel_dim", 4);
    require_positive(f, "linear_num_key_heads", c.linear_num_key_heads);
    require_positive(f, "linear_num_value_heads", c.linear_num_value_heads);
    if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
      throw ConfigError(f.where("linear_num_value_heads") + " must be a multiple of linear_num_key_heads");
    const int64_t interval = f.opt_int("full_attention_interval", 4);
    for (int64_t i = 0; i < c.num_layers; ++i)
      mixers[size_t(i)] = (i + 1) % interval == 0 ? MixerKind::GatedAttention : MixerKind::GatedDeltaNet;
  }
  if (f.has("layer_types")) {
    const Json& lt = f.raw("layer_types");
    if (!lt.is_array() || int64_t(lt.size()) != c.num_layers) {
      throw ConfigError(f.where("layer_types") + " must list one type per layer (" +
                        std::to_string(c.num_layers) + ")");
    }
    for (size_t i = 0; i < lt.size(); ++i) {
      const std::string t = lt[i].is_string() ? lt[i].get<std::string>() : lt[i].dump();
      if (qwen35 && t == "linear_attention") {
        mixers[i] = MixerKind::GatedDeltaNet;
      } else if (qwen35 && t == "full_attention") {
        mixers[i] = MixerKind::GatedAttention;
      } else if (!qwen35 && t == "full_attention") {
        mixers[i] = MixerKind::Attention;
      } else {
        throw UnsupportedError(f.where("layer_types") + "[" + std::to_string(i) + "] is '" + t +
                               "', which tune does not support for " + model_type);
      }
    }
  }

  bool any_dense = false;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    bool moe = moe_arch && (i + 1) % sparse_step == 0;
    for (int64_t m : mlp_only)
      if (m == i) moe = false;
    any_dense |= !moe;
    c.layers.push_back({mixers[size_t(i)], moe ? FfnKind::Moe : FfnKind::Dense});
  }
  if (any_dense) {
    c.intermediate_size = f.req_int("intermediate_size");
    require_positive(f, "intermediate_size", c.intermediate_size);
  } else {
    c.intermediate_size = f.opt_int("intermediate_size", 0);
  }
  return c;
}

ModelConfig model_config_load(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  if (!std::filesystem::exists(path))
    throw IoError(path + ": not found", "point --model at a Hugging Face model directory with a config.json");
  return model_config_from_json(json_load_file(path), path);
}

Json model_config_to_json(const ModelConfig& c) {
  const bool qwen35 = c.arch == Arch::Qwen3_5 || c.arch == Arch::Qwen3_5Moe;
  Json t;
  t["vocab_size"] = c.vocab_size;
  t["hidden_size"] = c.hidden_size;
  t["num_hidden_layers"] = c.num_layers;
  t["num_attention_heads"] = c.num_heads;
  t["num_key_value_heads"] = c.num_kv_heads;
  t["head_dim"] = c.head_dim;
  t["hidden_act"] = "silu";
  t["rms_norm_eps"] = c.rms_norm_eps;
  t["max_position_embeddings"] = c.max_position_embeddings;
  t["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.arch != Arch::Qwen2) t["attention_bias"] = c.attention_bias;
  if (c.intermediate_size > 0) t["intermediate_size"] = c.intermediate_size;
  Json rope = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  if (c.partial_rotary_factor != 1.0) rope["partial_rotary_factor"] = c.partial_rotary_factor;
  if (!c.mrope_section.empty()) {
    rope["mrope_section"] = c.mrope_section;
    rope["mrope_interleaved"] = true;
  }
  t["rope_parameters"] = rope;
  if (c.has_moe()) {
    t["num_experts"] = c.num_experts;
    t["num_experts_per_tok"] = c.num_experts_per_tok;
    t["moe_intermediate_size"] = c.moe_intermediate_size;
    Json mlp_only = Json::array();
    for (size_t i = 0; i < c.layers.size(); ++i)
      if (c.layers[i].ffn == FfnKind::Dense) mlp_only.push_back(i);
    t["mlp_only_layers"] = mlp_only;
    t["decoder_sparse_step"] = 1;
    if (c.arch == Arch::Qwen3Moe) t["norm_topk_prob"] = c.norm_topk_prob;
    if (c.shared_expert_intermediate_size > 0)
      t["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
  }
  Json layer_types = Json::array();
  for (const LayerSpec& l : c.layers)
    layer_types.push_back(l.mixer == MixerKind::GatedDeltaNet ? "linear_attention" : "full_attention");
  t["layer_types"] = layer_types;
  if (qwen35) {
    t["linear_num_key_heads"] = c.linear_num_key_heads;
    t["linear_num_value_heads"] = c.linear_num_value_heads;
    t["linear_key_head_dim"] = c.linear_key_head_dim;
    t["linear_value_head_dim"] = c.linear_value_head_dim;
    t["linear_conv_kernel_dim"] = c.linear_conv_kernel_dim;
    t["model_type"] = std::string(arch_name(c.arch)) + "_text";
    t["dtype"] = "float32";
    const char* cls = c.arch == Arch::Qwen3_5 ? "Qwen3_5ForCausalLM" : "Qwen3_5MoeForCausalLM";
    return {{"architectures", {cls}}, {"model_type", arch_name(c.arch)}, {"text_config", t},
            {"tie_word_embeddings", c.tie_word_embeddings}};
  }
  t["model_type"] = arch_name(c.arch);
  t["dtype"] = "float32";
  const char* cls = c.arch == Arch::Qwen2 ? "Qwen2ForCausalLM"
                    : c.arch == Arch::Qwen3 ? "Qwen3ForCausalLM"
                                            : "Qwen3MoeForCausalLM";
  t["architectures"] = {cls};
  return t;
}

}  // namespace tune
