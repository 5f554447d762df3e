// GGUF -> Model: keys to a config.json-shaped object (so model_config_from_json applies the usual defaults and
// checks), then every tensor of the spec table dequantized to f32.
#include "model/model_gguf.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/names.h"
#include "quant/dot.h"
#include "quant/quant.h"

namespace tune {

namespace {

Json config_json(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  const auto key = [&](const char* k) { return arch + "." + k; };
  const auto opt_int = [&](const std::string& k, int64_t def) { return f.find(k) ? f.get_int(k) : def; };
  const auto opt_float = [&](const std::string& k, double def) { return f.find(k) ? f.get_float(k) : def; };
  Json j;
  if (arch == "qwen2") j["model_type"] = "qwen2";
  else if (arch == "qwen3") j["model_type"] = "qwen3";
  else if (arch == "qwen3moe") j["model_type"] = "qwen3_moe";
  else
    throw UnsupportedError(f.path() + ": general.architecture is '" + arch + "'; tune reads qwen2, qwen3 and "
                           "qwen3moe GGUF files");
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) throw FormatError(f.path() + ": tensor token_embd.weight missing");
  const int64_t H = f.get_int(key("embedding_length"));
  const int64_t nh = f.get_int(key("attention.head_count"));
  j["vocab_size"] = embd->shape[0];
  j["hidden_size"] = H;
  j["num_hidden_layers"] = f.get_int(key("block_count"));
  j["num_attention_heads"] = nh;
  j["num_key_value_heads"] = opt_int(key("attention.head_count_kv"), nh);
  j["head_dim"] = opt_int(key("attention.key_length"), H / nh);
  j["rms_norm_eps"] = f.get_float(key("attention.layer_norm_rms_epsilon"));
  j["max_position_embeddings"] = opt_int(key("context_length"), 32768);
  j["rope_theta"] = opt_float(key("rope.freq_base"), 10000.0);
  j["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
  j["hidden_act"] = "silu";
  if (arch == "qwen3moe") {
    const int64_t n_used = f.get_int(key("expert_used_count"));
    j["num_experts"] = f.get_int(key("expert_count"));
    j["num_experts_per_tok"] = n_used;
    const int64_t ff = opt_int(key("feed_forward_length"), 0);
    j["moe_intermediate_size"] = opt_int(key("expert_feed_forward_length"), ff / std::max<int64_t>(1, n_used));
    j["intermediate_size"] = ff;
    // llama.cpp's qwen3moe renormalizes the top-k weights unless a file says otherwise.
    j["norm_topk_prob"] = f.find(key("expert_weights_norm")) ? f.get_bool(key("expert_weights_norm")) : true;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = Json::array();
  } else {
    j["intermediate_size"] = f.get_int(key("feed_forward_length"));
  }
  return j;
}

Tensor to_f32(const GgufFile& f, const GgufTensorInfo& info) {
  if (!info.has_dtype)
    throw UnsupportedError(f.path() + ": tensor " + info.name + " has ggml type " +
                           std::to_string(info.ggml_type) + ", which tune cannot dequantize");
  const Tensor t = f.tensor(info.name);
  if (info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16) return t.to(DType::F32);
  if (!quant_supported(info.dtype))
    throw UnsupportedError(f.path() + ": tensor " + info.name + " is " + dtype_name(info.dtype) +
                           ", which tune cannot dequantize");
  return dequantize(t);
}

// True when rows of `cols` values split into whole blocks of the activation type ggml pairs with `t`.
bool vec_dot_act_row_bytes_ok(DType t, int64_t cols) {
  try {
    (void)vec_dot_act_row_bytes(t, cols);
    return true;
  } catch (const UnsupportedError&) {
    return false;
  }
}

}  // namespace

bool is_gguf_path(const std::string& path) {
  if (path.size() < 5) return false;
  std::string ext = path.substr(path.size() - 5);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".gguf";
}

ModelConfig model_config_from_gguf(const std::string& path) {
  const GgufFile f(path);
  return model_config_from_json(config_json(f), path);
}

Model model_load_gguf(const std::string& path, bool keep_quantized) {
  const GgufFile f(path);
  Model m;
  m.config = model_config_from_json(config_json(f), path);
  m.report.source = path;
  m.weights.layers.resize(size_t(m.config.num_layers));
  Tensor tied_output;
  for (const TensorSpec& s : model_tensor_specs(m.config)) {
    const GgufTensorInfo* info = f.find_tensor(s.name);
    Tensor& dst = weights_field(m.weights, s);
    if (!info) {
      // llama.cpp treats q/k/v biases as optional; a qwen2 file without them means zero biases.
      if (s.name.find(".bias") != std::string::npos && s.shape.ndim == 1) {
        dst = Tensor::zeros(DType::F32, s.shape);
        continue;
      }
      throw FormatError(path + ": tensor " + s.name + " missing", "is this a " + m.config.model_type + " GGUF?");
    }
    if (info->shape != s.shape)
      throw FormatError(path + ": tensor " + s.name + " has shape " + info->shape.str() + ", expected " +
                        s.shape.str() + " from the file's keys");
    const bool keep = keep_quantized && info->has_dtype && info->dtype != DType::F32 &&
                      vec_dot_supported(info->dtype) && s.shape.ndim >= 2 &&
                      vec_dot_act_row_bytes_ok(info->dtype, s.shape.dims[s.shape.ndim - 1]);
    if (keep && s.name == "token_embd.weight") {
      // The row lookup needs f32; a tied output head multiplies by the file's quantized table, as llama.cpp.
      if (m.config.tie_word_embeddings) tied_output = f.tensor(info->name);
      dst = to_f32(f, *info);
    } else {
      dst = keep ? f.tensor(info->name) : to_f32(f, *info);
    }
    m.report.dtype_params[dtype_name(info->has_dtype ? info->dtype : DType::F32)] += s.shape.numel();
  }
  if (m.config.tie_word_embeddings) m.weights.output = tied_output.defined() ? tied_output : m.weights.token_embd;
  return m;
}

}  // namespace tune
