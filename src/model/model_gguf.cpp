// GGUF -> Model: keys to a config.json-shaped object (so model_config_from_json applies the usual defaults and
// checks), then every tensor of the spec table dequantized to f32.
#include "model/model_gguf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
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
  else if (arch == "qwen35") j["model_type"] = "qwen3_5";
  else if (arch == "qwen35moe") j["model_type"] = "qwen3_5_moe";
  else
    throw UnsupportedError(f.path() + ": general.architecture is '" + arch + "'; tune reads qwen2, qwen3, "
                           "qwen3moe, qwen35 and qwen35moe GGUF files");
  const bool qwen35 = arch == "qwen35" || arch == "qwen35moe";
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
  if (arch == "qwen3moe" || arch == "qwen35moe") {
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
    if (arch == "qwen35moe") j["shared_expert_intermediate_size"] = opt_int(key("expert_shared_feed_forward_length"), ff);
  } else {
    j["intermediate_size"] = f.get_int(key("feed_forward_length"));
  }
  if (qwen35) {
    // Gated DeltaNet sizes from the ssm.* keys (state_size is the key head size; inner_size = nV * value head
    // size); layer kinds from attention.recurrent_layers, else full_attention_interval (llama.cpp's rule).
    const int64_t nv = f.get_int(key("ssm.time_step_rank"));
    j["linear_num_key_heads"] = f.get_int(key("ssm.group_count"));
    j["linear_num_value_heads"] = nv;
    j["linear_key_head_dim"] = f.get_int(key("ssm.state_size"));
    j["linear_value_head_dim"] = f.get_int(key("ssm.inner_size")) / std::max<int64_t>(1, nv);
    j["linear_conv_kernel_dim"] = f.get_int(key("ssm.conv_kernel"));
    const int64_t n_layer = f.get_int(key("block_count"));
    Json kinds = Json::array();
    if (const GgufValue* rec = f.find(key("attention.recurrent_layers"))) {
      for (int64_t i = 0; i < n_layer; ++i) {
        const GgufValue v = rec->at(size_t(i));
        const bool r = v.type() == GgufType::BOOL ? v.as_bool() : v.as_int() != 0;
        kinds.push_back(r ? "linear_attention" : "full_attention");
      }
    } else {
      const int64_t interval = opt_int(key("full_attention_interval"), 4);
      for (int64_t i = 0; i < n_layer; ++i)
        kinds.push_back((i + 1) % interval != 0 ? "linear_attention" : "full_attention");
    }
    j["layer_types"] = kinds;
    const int64_t hd = j["head_dim"].get<int64_t>();
    Json rope = {{"rope_type", "default"}, {"rope_theta", j["rope_theta"]},
                 {"partial_rotary_factor", double(opt_int(key("rope.dimension_count"), hd)) / double(hd)}};
    if (const GgufValue* sec = f.find(key("rope.dimension_sections"))) {
      std::vector<int64_t> v = sec->as_ints();
      v.resize(3);  // HF's mrope_section has the three position axes
      rope["mrope_section"] = v;
    }
    j["rope_parameters"] = rope;
  }
  return j;
}

// The config of `f`: rotary_dim taken from the file exactly (partial_rotary_factor is only its ratio).
ModelConfig config_of(const GgufFile& f) {
  ModelConfig c = model_config_from_json(config_json(f), f.path());
  const std::string arch = f.get_string("general.architecture");
  if (const GgufValue* rd = f.find(arch + ".rope.dimension_count")) c.rotary_dim = rd->as_int();
  return c;
}

// The converter's value transforms of internal tensor `name`.
struct ValueTransform {
  std::vector<int64_t> rows, cols;  // GGUF row / column -> tune row / column (empty: same order)
  bool shifted_norm = false;        // zero-centred RMSNorm weight, stored + 1
  bool a_log = false;               // A_log, stored as -exp(A_log)
  ValueTransform(const ModelConfig& c, const std::string& name) {
    const std::string gname = gguf_tensor_name(c, name);
    rows = gguf_row_order(c, gname);
    cols = gguf_column_order(c, gname);
    shifted_norm = c.norm_zero_centered && name.ends_with("norm.weight") && !name.ends_with("ssm_norm.weight");
    a_log = name.ends_with("ssm_a_log");
  }
  bool none() const { return rows.empty() && cols.empty() && !shifted_norm && !a_log; }
};

// Undoes gguf_tensor_values: `t` (f32, GGUF layout) -> tune's values of internal tensor `name`.
Tensor from_gguf_values(const ModelConfig& c, const std::string& name, const Tensor& t) {
  const ValueTransform v(c, name);
  if (v.none()) return t;
  Tensor out = Tensor::empty(DType::F32, t.shape());
  const int64_t n = t.size(0), inner = t.numel() / n;
  for (int64_t r = 0; r < n; ++r) {
    const float* src = t.f32() + r * inner;
    float* dst = out.f32() + (v.rows.empty() ? r : v.rows[size_t(r)]) * inner;
    for (int64_t j = 0; j < inner; ++j) dst[v.cols.empty() ? j : v.cols[size_t(j)]] = src[j];
  }
  for (int64_t i = 0; i < out.numel(); ++i) {
    if (v.shifted_norm) out.f32()[i] -= 1.0f;
    if (v.a_log) out.f32()[i] = std::log(-out.f32()[i]);
  }
  return out;
}

// A quantized matrix with its rows put back in tune's order (rows are independent blocks).
Tensor unpermute_rows(const Tensor& q, const std::vector<int64_t>& rows) {
  Tensor out = Tensor::empty(q.dtype(), q.shape());
  const size_t row_bytes = q.nbytes() / size_t(q.size(0));
  for (size_t r = 0; r < rows.size(); ++r)
    std::memcpy(static_cast<uint8_t*>(out.data()) + size_t(rows[r]) * row_bytes,
                static_cast<const uint8_t*>(q.data()) + r * row_bytes, row_bytes);
  return out;
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

Tensor gguf_tensor_values(const ModelConfig& c, const std::string& name, const Tensor& t) {
  const ValueTransform v(c, name);
  if (v.none()) return t;
  Tensor out = Tensor::empty(DType::F32, t.shape());
  const int64_t n = t.size(0), inner = t.numel() / n;
  for (int64_t r = 0; r < n; ++r) {
    const float* src = t.f32() + (v.rows.empty() ? r : v.rows[size_t(r)]) * inner;
    float* dst = out.f32() + r * inner;
    for (int64_t j = 0; j < inner; ++j) dst[j] = src[v.cols.empty() ? j : v.cols[size_t(j)]];
  }
  for (int64_t i = 0; i < out.numel(); ++i) {
    if (v.shifted_norm) out.f32()[i] += 1.0f;
    if (v.a_log) out.f32()[i] = -std::exp(out.f32()[i]);
  }
  return out;
}

bool is_gguf_path(const std::string& path) {
  if (path.size() < 5) return false;
  std::string ext = path.substr(path.size() - 5);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".gguf";
}

ModelConfig model_config_from_gguf(const std::string& path) {
  const GgufFile f(path);
  return config_of(f);
}

Model model_load_gguf(const std::string& path, bool keep_quantized) {
  const GgufFile f(path);
  Model m;
  m.config = config_of(f);
  m.report.source = path;
  m.weights.layers.resize(size_t(m.config.num_layers));
  Tensor tied_output;
  for (const TensorSpec& s : model_tensor_specs(m.config)) {
    const std::string gname = gguf_tensor_name(m.config, s.name);
    const GgufTensorInfo* info = f.find_tensor(gname);
    Tensor& dst = weights_field(m.weights, s);
    if (!info) {
      // llama.cpp treats q/k/v biases as optional; a qwen2 file without them means zero biases.
      if (s.name.find(".bias") != std::string::npos && s.shape.ndim == 1) {
        dst = Tensor::zeros(DType::F32, s.shape);
        continue;
      }
      throw FormatError(path + ": tensor " + gname + " missing", "is this a " + m.config.model_type + " GGUF?");
    }
    // ggml ignores outer sizes of 1: the shared-expert gate may be stored as {H} or {H, 1}.
    const bool same_shape = info->shape == s.shape || (info->shape.numel() == s.shape.numel() &&
                                                       s.shape.ndim == 2 && s.shape[0] == 1 && info->shape.ndim == 1);
    if (!same_shape)
      throw FormatError(path + ": tensor " + gname + " has shape " + info->shape.str() + ", expected " +
                        s.shape.str() + " from the file's keys");
    // A matrix whose columns llama.cpp reorders (Qwen3.5's ssm_out) is dequantized: its blocks span the
    // reordered columns.
    const bool keep = keep_quantized && info->has_dtype && info->dtype != DType::F32 &&
                      vec_dot_supported(info->dtype) && s.shape.ndim >= 2 &&
                      vec_dot_act_row_bytes_ok(info->dtype, s.shape.dims[s.shape.ndim - 1]) &&
                      gguf_column_order(m.config, gname).empty();
    if (keep && s.name == "token_embd.weight") {
      // The row lookup needs f32; a tied output head multiplies by the file's quantized table, as llama.cpp.
      if (m.config.tie_word_embeddings) tied_output = f.tensor(info->name);
      dst = to_f32(f, *info);
    } else if (keep) {
      const std::vector<int64_t> rows = gguf_row_order(m.config, gname);
      dst = rows.empty() ? f.tensor(info->name) : unpermute_rows(f.tensor(info->name), rows);
    } else {
      dst = from_gguf_values(m.config, s.name, to_f32(f, *info).reshape(s.shape));
    }
    m.report.dtype_params[dtype_name(info->has_dtype ? info->dtype : DType::F32)] += s.shape.numel();
  }
  if (m.config.tie_word_embeddings) m.weights.output = tied_output.defined() ? tied_output : m.weights.token_embd;
  return m;
}

}  // namespace tune
