// GGUF export: metadata as llama.cpp's converter writes it, per-tensor types as llama-quantize chooses them.
#include "export/gguf_export.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "model/model_gguf.h"
#include "model/names.h"
#include "quant/quant.h"

namespace tune {

namespace {

struct FtInfo {
  GgufFileType t;
  const char* name;
  uint32_t llama_ftype;
  DType base;
};
const FtInfo kFileTypes[] = {
    {GgufFileType::F32, "F32", 0, DType::F32},        {GgufFileType::F16, "F16", 1, DType::F16},
    {GgufFileType::BF16, "BF16", 32, DType::BF16},    {GgufFileType::Q8_0, "Q8_0", 7, DType::Q8_0},
    {GgufFileType::Q6_K, "Q6_K", 18, DType::Q6_K},    {GgufFileType::Q5_K_M, "Q5_K_M", 17, DType::Q5_K},
    {GgufFileType::Q4_K_M, "Q4_K_M", 15, DType::Q4_K}, {GgufFileType::Q3_K_M, "Q3_K_M", 12, DType::Q3_K},
    {GgufFileType::Q2_K, "Q2_K", 10, DType::Q2_K},
};

const FtInfo& ft_info(GgufFileType t) {
  for (const FtInfo& f : kFileTypes)
    if (f.t == t) return f;
  throw InternalError("unknown GGUF file type");
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama-quant's use_more_bits: the first and last eighth of the layers and every third one between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

// GPT-2's byte-level alphabet: the character standing for byte b, as UTF-8.
std::string byte_level_char(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
  uint32_t cp = uint32_t(b);
  if (!printable) {
    uint32_t next = 256;
    for (int x = 0; x < b; ++x) {
      const bool p = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
      if (!p) ++next;
    }
    cp = next;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
  return s;
}

// The converter's does_token_look_special: <|...|>, <｜...｜> and a few fixed spellings.
bool looks_special(const std::string& t) {
  if (t.size() >= 4 && t.rfind("<|", 0) == 0 && ends_with(t, "|>")) return true;
  if (t.rfind("<\xef\xbd\x9c", 0) == 0 && ends_with(t, "\xef\xbd\x9c>")) return true;
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]";
}

// The interval of full-attention layers (layer i is full attention iff (i + 1) % interval == 0), or 4 when the
// layer kinds follow no such pattern.
int64_t full_attention_interval(const ModelConfig& c) {
  for (int64_t k = 1; k <= c.num_layers; ++k) {
    bool fits = true;
    for (int64_t i = 0; i < c.num_layers && fits; ++i)
      fits = (c.layers[size_t(i)].mixer != MixerKind::GatedDeltaNet) == ((i + 1) % k == 0);
    if (fits) return k;
  }
  return 4;
}

// Non-finite importance values: llama-quantize refuses the whole imatrix.
void check_imatrix(const GgufExportOptions& o) {
  if (!o.imatrix) return;
  for (const auto& [name, v] : *o.imatrix)
    for (float x : v)
      if (!std::isfinite(x))
        throw ConfigError("imatrix entry " + name + " holds a non-finite value (" + std::to_string(x) + ")",
                          "recompute the imatrix; the activations overflowed");
}

// llama-quantize's lookup for a tensor going to `type`: the importance (n_mat · cols values) or null, with a
// note for the progress line.
const float* importance_for(const GgufExportOptions& o, const std::string& name, DType type, const Shape& shape,
                            std::string& note) {
  if (!o.imatrix || !dtype_is_quantized(type) || shape.ndim < 2) return nullptr;
  auto it = o.imatrix->find(name);
  if (it == o.imatrix->end()) {
    note = " (no imatrix entry)";
    return nullptr;
  }
  const int64_t cols = shape[shape.ndim - 1], n_mat = shape.ndim == 3 ? shape[0] : 1;
  if (int64_t(it->second.size()) != cols * n_mat) {
    if (name == "token_embd.weight") {
      note = " (imatrix entry of another size ignored)";
      return nullptr;
    }
    throw ConfigError("imatrix entry " + name + " has " + std::to_string(it->second.size()) +
                          " values, but the tensor " + shape.str() + " needs " + std::to_string(cols * n_mat) +
                          (n_mat > 1 ? " (" + std::to_string(cols) + " per expert)" : ""),
                      "was the imatrix computed on this model?");
  }
  note = " (imatrix)";
  return it->second.data();
}

// The keys llama-quantize records when it quantizes with an imatrix.
void set_imatrix_keys(GgufWriter& w, const GgufExportOptions& o) {
  if (!o.imatrix) return;
  if (!o.imatrix_file.empty()) w.set("quantize.imatrix.file", GgufValue::string(o.imatrix_file));
  if (!o.imatrix_dataset.empty()) w.set("quantize.imatrix.dataset", GgufValue::string(o.imatrix_dataset));
  w.set("quantize.imatrix.entries_count", GgufValue::u32(uint32_t(o.imatrix->size())));
  if (o.imatrix_chunks > 0) w.set("quantize.imatrix.chunks_count", GgufValue::u32(uint32_t(o.imatrix_chunks)));
}

// Quantizes `rows` rows of `cols` f32 values (n_mat matrices stacked) into dst; matrix m uses importance slice m.
void quantize_matrices(DType type, const float* src, void* dst, int64_t rows, int64_t cols, int64_t n_mat,
                       const float* importance) {
  const int64_t per = rows / n_mat;
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t m = 0; m < n_mat; ++m)
    out += quantize_rows(type, src + m * per * cols, out, per, cols, importance ? importance + m * cols : nullptr);
}

}  // namespace

GgufFileType gguf_file_type_parse(const std::string& s) {
  std::string up = s;
  for (char& ch : up) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  for (const FtInfo& f : kFileTypes)
    if (up == f.name) return f.t;
  throw ConfigError("unknown GGUF type '" + s + "'", "choose one of F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K");
}

const char* gguf_file_type_name(GgufFileType t) { return ft_info(t).name; }
uint32_t gguf_llama_ftype(GgufFileType t) { return ft_info(t).llama_ftype; }

const char* gguf_arch_name(const ModelConfig& c) {
  switch (c.arch) {
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Qwen3Moe: return "qwen3moe";
    case Arch::Qwen3_5: return "qwen35";
    case Arch::Qwen3_5Moe: return "qwen35moe";
  }
  throw InternalError("unknown architecture");
}

DType gguf_tensor_type(GgufFileType ft, const ModelConfig& c, const std::string& name, const Shape& shape,
                       GgufTypeCounters& counters) {
  // What the converter and llama-quantize never quantize: 1-D tensors (as ggml counts dimensions: outer sizes of
  // 1 do not count, so the [1, H] shared-expert gate is one), biases, norms, the MoE router, the DeltaNet conv.
  int ggml_dims = shape.ndim;
  while (ggml_dims > 1 && shape[shape.ndim - ggml_dims] == 1) --ggml_dims;
  const bool quantizable = ggml_dims >= 2 && ends_with(name, "weight") && !ends_with(name, "_norm.weight") &&
                           !contains(name, "ffn_gate_inp.weight") && !contains(name, "ssm_conv1d");
  // Counters advance for every matching tensor, as llama-quantize counts them.
  const bool is_wv = contains(name, "attn_v.weight") || contains(name, "attn_qkv.weight");
  const bool is_down = contains(name, "ffn_down");
  if (!quantizable) return DType::F32;
  const FtInfo& info = ft_info(ft);
  if (!dtype_is_quantized(info.base)) {
    if (is_wv) ++counters.i_attention_wv;
    if (is_down) ++counters.i_ffn_down;
    return info.base;
  }
  const int64_t nx = shape[shape.ndim - 1];  // ggml ne[0]
  const bool tied = c.tie_word_embeddings;
  const int64_t n_expert = c.num_experts;
  const int n_layer = int(c.num_layers);
  DType t = info.base;
  if (name == "output.weight" || (tied && name == "token_embd.weight")) {
    if (nx % 256 != 0) t = DType::Q8_0;
    else if (t != DType::Q8_0) t = DType::Q6_K;
  } else if (is_wv) {
    const int i = counters.i_attention_wv, n = n_layer;
    if (ft == GgufFileType::Q2_K) t = c.num_heads / c.num_kv_heads >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (ft == GgufFileType::Q3_K_M) t = i < 2 ? DType::Q5_K : DType::Q4_K;
    else if ((ft == GgufFileType::Q4_K_M || ft == GgufFileType::Q5_K_M) && use_more_bits(i, n)) t = DType::Q6_K;
    if (n_expert == 8) t = DType::Q8_0;
    ++counters.i_attention_wv;
  } else if (contains(name, "attn_k.weight")) {
    if (n_expert == 8) t = DType::Q8_0;
  } else if (is_down) {
    int i = counters.i_ffn_down;
    if (n_expert > 1) i = layer_of(name);
    const int n = n_layer;
    if (ft == GgufFileType::Q2_K) t = DType::Q3_K;
    else if (ft == GgufFileType::Q3_K_M) t = i < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if ((ft == GgufFileType::Q4_K_M || ft == GgufFileType::Q5_K_M) && use_more_bits(i, n)) t = DType::Q6_K;
    ++counters.i_ffn_down;
  } else if (contains(name, "attn_output.weight")) {
    if (n_expert == 8) {
      if (ft == GgufFileType::Q2_K || ft == GgufFileType::Q3_K_M || ft == GgufFileType::Q4_K_M) t = DType::Q5_K;
    } else {
      if (ft == GgufFileType::Q2_K) t = DType::Q3_K;
      else if (ft == GgufFileType::Q3_K_M) t = DType::Q4_K;
    }
  }
  // Rows that are not a whole number of blocks: llama.cpp's fallbacks.
  if (nx % dtype_info(t).block_size != 0) {
    switch (t) {
      case DType::Q4_K: t = DType::Q5_0; break;
      case DType::Q5_K: t = DType::Q5_1; break;
      case DType::Q6_K: t = DType::Q8_0; break;
      case DType::Q2_K:
      case DType::Q3_K: t = DType::Q4_0; break;
      default: break;
    }
    if (nx % dtype_info(t).block_size != 0) t = DType::F16;
  }
  return t;
}

void gguf_export(const Model& model, const Tokenizer* tokenizer, const std::string& path,
                 const GgufExportOptions& options) {
  const ModelConfig& c = model.config;
  const std::string arch = gguf_arch_name(c);
  const auto key = [&](const char* k) { return arch + "." + k; };
  GgufWriter w;
  w.set("general.architecture", GgufValue::string(arch));
  w.set("general.type", GgufValue::string("model"));
  if (!options.name.empty()) w.set("general.name", GgufValue::string(options.name));
  w.set("general.file_type", GgufValue::u32(gguf_llama_ftype(options.type)));
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set(key("block_count"), GgufValue::u32(uint32_t(c.num_layers)));
  w.set(key("context_length"), GgufValue::u32(uint32_t(c.max_position_embeddings)));
  w.set(key("embedding_length"), GgufValue::u32(uint32_t(c.hidden_size)));
  const bool qwen35 = c.arch == Arch::Qwen3_5 || c.arch == Arch::Qwen3_5Moe;
  if (!qwen35 || c.intermediate_size > 0)  // the converter writes it only when the config has intermediate_size
    w.set(key("feed_forward_length"),
          GgufValue::u32(uint32_t(c.intermediate_size > 0 ? c.intermediate_size : c.moe_intermediate_size)));
  w.set(key("attention.head_count"), GgufValue::u32(uint32_t(c.num_heads)));
  w.set(key("attention.head_count_kv"), GgufValue::u32(uint32_t(c.num_kv_heads)));
  w.set(key("attention.key_length"), GgufValue::u32(uint32_t(c.head_dim)));
  w.set(key("attention.value_length"), GgufValue::u32(uint32_t(c.head_dim)));
  w.set(key("rope.freq_base"), GgufValue::f32(float(c.rope_theta)));
  w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(float(c.rms_norm_eps)));
  if (c.has_moe()) {
    for (const LayerSpec& l : c.layers)
      if (l.ffn != FfnKind::Moe)
        throw UnsupportedError("GGUF export: " + arch + " with dense layers (mlp_only_layers / decoder_sparse_step) "
                               "has no llama.cpp architecture", "llama.cpp's " + arch + " expects every layer to be MoE");
    w.set(key("expert_count"), GgufValue::u32(uint32_t(c.num_experts)));
    w.set(key("expert_used_count"), GgufValue::u32(uint32_t(c.num_experts_per_tok)));
    w.set(key("expert_feed_forward_length"), GgufValue::u32(uint32_t(c.moe_intermediate_size)));
    if (c.shared_expert_intermediate_size > 0)
      w.set(key("expert_shared_feed_forward_length"), GgufValue::u32(uint32_t(c.shared_expert_intermediate_size)));
    // llama.cpp's qwen3moe and qwen35moe always renormalize the top-k weights (build_moe_ffn with norm_w = true;
    // they do not read this key). The flag is recorded so tune reads such a file back faithfully.
    w.set(key("expert_weights_norm"), GgufValue::boolean(c.norm_topk_prob));
    if (!c.norm_topk_prob && options.progress)
      options.progress("warning: norm_topk_prob is false, but llama.cpp's " + arch + " always renormalizes the "
                       "top-k expert weights; llama.cpp will not reproduce this model exactly");
  }
  if (qwen35) {
    // Partial interleaved M-RoPE (text positions: plain RoPE over rotary_dim dims); the converter pads the HF
    // mrope_section to 4 entries and writes [11, 11, 10, 0] when the config has none.
    w.set(key("rope.dimension_count"), GgufValue::u32(uint32_t(c.rotary_dim)));
    std::vector<int64_t> sections = c.mrope_section.empty() ? std::vector<int64_t>{11, 11, 10} : c.mrope_section;
    sections.resize(4, 0);
    w.set(key("rope.dimension_sections"), GgufValue::ints(GgufType::INT32, sections));
    w.set(key("ssm.conv_kernel"), GgufValue::u32(uint32_t(c.linear_conv_kernel_dim)));
    w.set(key("ssm.state_size"), GgufValue::u32(uint32_t(c.linear_key_head_dim)));
    w.set(key("ssm.group_count"), GgufValue::u32(uint32_t(c.linear_num_key_heads)));
    w.set(key("ssm.time_step_rank"), GgufValue::u32(uint32_t(c.linear_num_value_heads)));
    w.set(key("ssm.inner_size"), GgufValue::u32(uint32_t(c.linear_value_head_dim * c.linear_num_value_heads)));
    std::vector<bool> recurrent;
    for (const LayerSpec& l : c.layers) recurrent.push_back(l.mixer == MixerKind::GatedDeltaNet);
    w.set(key("attention.recurrent_layers"), GgufValue::bools(recurrent));
    // Overridden by recurrent_layers; the interval the layer kinds follow, else transformers' default 4.
    w.set(key("full_attention_interval"), GgufValue::u32(uint32_t(full_attention_interval(c))));
    if (c.linear_key_head_dim != c.linear_value_head_dim && options.progress)
      options.progress("warning: linear_key_head_dim " + std::to_string(c.linear_key_head_dim) +
                       " != linear_value_head_dim " + std::to_string(c.linear_value_head_dim) + "; llama.cpp's " +
                       arch + " assumes equal key and value head sizes and will not load this file");
  }

  // Vocabulary.
  const int64_t V = c.vocab_size;
  std::vector<std::string> tokens(static_cast<size_t>(V));
  std::vector<int64_t> types(static_cast<size_t>(V), 1);
  std::vector<std::string> merges;
  if (tokenizer) {
    std::map<int32_t, const AddedTokenSpec*> added;
    for (const AddedTokenSpec& a : options.added_tokens) added[a.id] = &a;
    if (tokenizer->vocab_size() > V)
      throw ConfigError("GGUF export: the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                        " tokens but the model's embedding only " + std::to_string(V) + " rows");
    for (int64_t i = 0; i < V; ++i) {
      const std::string text = i < tokenizer->vocab_size() ? tokenizer->token_text(int32_t(i)) : "";
      if (text.empty()) {
        tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
        types[size_t(i)] = 4;
        continue;
      }
      tokens[size_t(i)] = text;
      auto it = added.find(int32_t(i));
      if (it != added.end()) {
        types[size_t(i)] = it->second->special || looks_special(text) ? 3 : 4;
      } else if (options.added_tokens.empty() && tokenizer->is_special(int32_t(i))) {
        types[size_t(i)] = 3;
      }
    }
    merges = tokenizer->merges();
  } else {
    for (int64_t i = 0; i < V; ++i) {
      if (i < 256) {
        tokens[size_t(i)] = byte_level_char(int(i));
      } else {
        tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
        types[size_t(i)] = 4;
      }
    }
  }
  w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  w.set("tokenizer.ggml.pre",
        GgufValue::string(std::string(pre_tokenizer_gguf_name(tokenizer ? tokenizer->pre_tokenizer() : PreTokenizerKind::kQwen2))));
  w.set("tokenizer.ggml.tokens", GgufValue::strings(std::move(tokens)));
  w.set("tokenizer.ggml.token_type", GgufValue::ints(GgufType::INT32, types));
  w.set("tokenizer.ggml.merges", GgufValue::strings(std::move(merges)));
  if (tokenizer) {
    const int32_t eot = tokenizer->token_id("<|endoftext|>");
    const int32_t bos = tokenizer->bos_id() >= 0 ? tokenizer->bos_id() : eot;
    const int32_t eos = tokenizer->eos_id() >= 0 ? tokenizer->eos_id() : eot;
    const int32_t pad = tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : eot;
    if (bos >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(uint32_t(bos)));
    if (eos >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(uint32_t(eos)));
    if (pad >= 0) w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(uint32_t(pad)));
  }
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
  if (!options.chat_template.empty())
    w.set("tokenizer.chat_template", GgufValue::string(options.chat_template));

  set_imatrix_keys(w, options);
  check_imatrix(options);

  // Tensors, in the converter's order (embedding, blocks, output norm, head).
  GgufTypeCounters counters;
  const std::vector<TensorSpec> specs = model_tensor_specs(c);
  size_t index = 0;
  for (const TensorSpec& s : specs) {
    ++index;
    Tensor t = weights_field(model.weights, s);
    if (!t.defined()) throw InternalError("GGUF export: weight " + s.name + " is not loaded");
    if (t.dtype() != DType::F32 || t.device() != Device::CPU || !t.view().is_contiguous()) t = t.to(DType::F32);
    if (t.shape() != s.shape)
      throw InternalError("GGUF export: " + s.name + " has shape " + t.shape().str() + ", expected " +
                          s.shape.str());
    const std::string name = gguf_tensor_name(c, s.name);
    t = gguf_tensor_values(c, s.name, t);
    const DType type = gguf_tensor_type(options.type, c, name, s.shape, counters);
    const int64_t cols = s.shape[s.shape.ndim - 1];
    const int64_t rows = s.shape.numel() / cols;
    const int64_t n_mat = s.shape.ndim == 3 ? s.shape[0] : 1;
    std::string note;
    const float* imp = importance_for(options, name, type, s.shape, note);
    if (options.progress) {
      options.progress("[" + std::to_string(index) + "/" + std::to_string(specs.size()) + "] " + name + " " +
                       s.shape.str() + " -> " + dtype_name(type) + note);
    }
    w.add_tensor(name, type, s.shape, [t, type, rows, cols, imp, n_mat](void* dst) {
      quantize_matrices(type, t.f32(), dst, rows, cols, n_mat, imp);
    });
  }
  w.write(path);
}

void gguf_requantize(const std::string& in_path, const std::string& out_path, const GgufExportOptions& options) {
  const GgufFile in(in_path);
  const ModelConfig c = model_config_from_gguf(in_path);
  check_imatrix(options);
  GgufWriter w;
  for (const auto& [k, v] : in.metadata()) {
    if (k == "general.alignment") continue;
    w.set(k, v);
  }
  w.set("general.file_type", GgufValue::u32(gguf_llama_ftype(options.type)));
  w.set("general.quantization_version", GgufValue::u32(2));
  set_imatrix_keys(w, options);
  GgufTypeCounters counters;
  size_t index = 0;
  for (const GgufTensorInfo& info : in.tensors()) {
    ++index;
    if (!info.has_dtype || !(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
                             quant_supported(info.dtype)))
      throw UnsupportedError(in_path + ": tensor " + info.name + " has a ggml type tune cannot dequantize");
    DType t = gguf_tensor_type(options.type, c, info.name, info.shape, counters);
    // Tensors llama-quantize leaves alone keep their type.
    if (t == DType::F32 && info.dtype != DType::F32) t = info.dtype;
    const int64_t cols = info.shape[info.shape.ndim - 1];
    const int64_t rows = info.shape.numel() / cols;
    const int64_t n_mat = info.shape.ndim == 3 ? info.shape[0] : 1;
    std::string note;
    const float* imp = importance_for(options, info.name, t, info.shape, note);
    if (options.progress)
      options.progress("[" + std::to_string(index) + "/" + std::to_string(in.tensors().size()) + "] " + info.name +
                       " " + dtype_name(info.dtype) + " -> " + dtype_name(t) + note);
    if (t == info.dtype && !dtype_is_quantized(t)) {
      w.add_tensor(info.name, t, info.shape, in.tensor_data(info));
      continue;
    }
    const Tensor src = in.tensor(info.name);
    w.add_tensor(info.name, t, info.shape, [src, t, rows, cols, n_mat, imp](void* dst) {
      const Tensor f = src.dtype() == DType::F32 ? src
                       : (src.dtype() == DType::F16 || src.dtype() == DType::BF16) ? src.to(DType::F32)
                                                                                   : dequantize(src);
      quantize_matrices(t, f.f32(), dst, rows, cols, n_mat, imp);
    });
  }
  w.write(out_path);
}

}  // namespace tune
