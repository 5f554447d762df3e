// The tensor table for every supported architecture.
#include "model/names.h"

#include <utility>

namespace tune {

namespace {

struct Builder {
  std::vector<TensorSpec> specs;

  void model(const char* name, const char* hf, Shape shape, Tensor ModelWeights::*field, bool absolute = false) {
    TensorSpec s;
    s.name = name;
    s.hf_name = hf;
    s.hf_absolute = absolute;
    s.shape = s.hf_shape = shape;
    s.model_field = field;
    specs.push_back(std::move(s));
  }
  void layer(int l, const char* name, const char* hf, Shape shape, Tensor LayerWeights::*field,
             HfLayout layout = HfLayout::Plain, Shape hf_shape = {}) {
    TensorSpec s;
    s.name = "blk." + std::to_string(l) + "." + name;
    s.hf_name = "layers." + std::to_string(l) + "." + hf;
    s.layout = layout;
    s.shape = shape;
    s.hf_shape = hf_shape.ndim ? hf_shape : shape;
    s.layer = l;
    s.layer_field = field;
    specs.push_back(std::move(s));
  }
};

}  // namespace

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  using L = LayerWeights;
  const int64_t H = c.hidden_size, V = c.vocab_size, hd = c.head_dim;
  Builder b;
  b.model("token_embd.weight", "embed_tokens.weight", {V, H}, &ModelWeights::token_embd);
  for (int l = 0; l < int(c.num_layers); ++l) {
    const LayerSpec& ls = c.layers[size_t(l)];
    b.layer(l, "attn_norm.weight", "input_layernorm.weight", {H}, &L::attn_norm);
    if (ls.mixer == MixerKind::GatedDeltaNet) {
      const int64_t nk = c.linear_num_key_heads, nv = c.linear_num_value_heads;
      const int64_t key_dim = nk * c.linear_key_head_dim, value_dim = nv * c.linear_value_head_dim;
      const int64_t conv_dim = 2 * key_dim + value_dim, K = c.linear_conv_kernel_dim;
      b.layer(l, "ssm_qkv.weight", "linear_attn.in_proj_qkv.weight", {conv_dim, H}, &L::ssm_qkv);
      b.layer(l, "ssm_gate.weight", "linear_attn.in_proj_z.weight", {value_dim, H}, &L::ssm_gate);
      b.layer(l, "ssm_beta.weight", "linear_attn.in_proj_b.weight", {nv, H}, &L::ssm_beta);
      b.layer(l, "ssm_alpha.weight", "linear_attn.in_proj_a.weight", {nv, H}, &L::ssm_alpha);
      b.layer(l, "ssm_conv1d.weight", "linear_attn.conv1d.weight", {conv_dim, K}, &L::ssm_conv1d, HfLayout::Plain,
              {conv_dim, 1, K});
      b.layer(l, "ssm_dt.bias", "linear_attn.dt_bias", {nv}, &L::ssm_dt_bias);
      b.layer(l, "ssm_a_log", "linear_attn.A_log", {nv}, &L::ssm_a_log);
      b.layer(l, "ssm_norm.weight", "linear_attn.norm.weight", {c.linear_value_head_dim}, &L::ssm_norm);
      b.layer(l, "ssm_out.weight", "linear_attn.out_proj.weight", {H, value_dim}, &L::ssm_out);
    } else {
      const int64_t qd = c.q_dim(ls.mixer), kvd = c.kv_dim();
      b.layer(l, "attn_q.weight", "self_attn.q_proj.weight", {qd, H}, &L::attn_q);
      if (c.attention_bias) b.layer(l, "attn_q.bias", "self_attn.q_proj.bias", {qd}, &L::attn_q_bias);
      b.layer(l, "attn_k.weight", "self_attn.k_proj.weight", {kvd, H}, &L::attn_k);
      if (c.attention_bias) b.layer(l, "attn_k.bias", "self_attn.k_proj.bias", {kvd}, &L::attn_k_bias);
      b.layer(l, "attn_v.weight", "self_attn.v_proj.weight", {kvd, H}, &L::attn_v);
      if (c.attention_bias) b.layer(l, "attn_v.bias", "self_attn.v_proj.bias", {kvd}, &L::attn_v_bias);
      b.layer(l, "attn_output.weight", "self_attn.o_proj.weight", {H, c.num_heads * hd}, &L::attn_output);
      if (c.qk_norm) {
        b.layer(l, "attn_q_norm.weight", "self_attn.q_norm.weight", {hd}, &L::attn_q_norm);
        b.layer(l, "attn_k_norm.weight", "self_attn.k_norm.weight", {hd}, &L::attn_k_norm);
      }
    }
    b.layer(l, "ffn_norm.weight", "post_attention_layernorm.weight", {H}, &L::ffn_norm);
    if (ls.ffn == FfnKind::Dense) {
      const int64_t I = c.intermediate_size;
      b.layer(l, "ffn_gate.weight", "mlp.gate_proj.weight", {I, H}, &L::ffn_gate);
      b.layer(l, "ffn_up.weight", "mlp.up_proj.weight", {I, H}, &L::ffn_up);
      b.layer(l, "ffn_down.weight", "mlp.down_proj.weight", {H, I}, &L::ffn_down);
    } else {
      const int64_t E = c.num_experts, I = c.moe_intermediate_size;
      b.layer(l, "ffn_gate_inp.weight", "mlp.gate.weight", {E, H}, &L::ffn_gate_inp);
      b.layer(l, "ffn_gate_exps.weight", "mlp.experts", {E, I, H}, &L::ffn_gate_exps, HfLayout::ExpertsGate);
      b.layer(l, "ffn_up_exps.weight", "mlp.experts", {E, I, H}, &L::ffn_up_exps, HfLayout::ExpertsUp);
      b.layer(l, "ffn_down_exps.weight", "mlp.experts", {E, H, I}, &L::ffn_down_exps, HfLayout::ExpertsDown);
      if (c.shared_expert_intermediate_size > 0) {
        const int64_t S = c.shared_expert_intermediate_size;
        b.layer(l, "ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight", {1, H}, &L::ffn_gate_inp_shexp);
        b.layer(l, "ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight", {S, H}, &L::ffn_gate_shexp);
        b.layer(l, "ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight", {S, H}, &L::ffn_up_shexp);
        b.layer(l, "ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight", {H, S}, &L::ffn_down_shexp);
      }
    }
  }
  b.model("output_norm.weight", "norm.weight", {H}, &ModelWeights::output_norm);
  if (!c.tie_word_embeddings) b.model("output.weight", "lm_head.weight", {V, H}, &ModelWeights::output, true);
  return b.specs;
}

Tensor& weights_field(ModelWeights& w, const TensorSpec& s) {
  return s.layer >= 0 ? w.layers[size_t(s.layer)].*(s.layer_field) : w.*(s.model_field);
}

const Tensor& weights_field(const ModelWeights& w, const TensorSpec& s) {
  return s.layer >= 0 ? w.layers[size_t(s.layer)].*(s.layer_field) : w.*(s.model_field);
}

namespace {

bool is_qwen35(const ModelConfig& c) { return c.arch == Arch::Qwen3_5 || c.arch == Arch::Qwen3_5Moe; }

// Qwen3.5's renamed tensors: {internal suffix, GGUF suffix} after "blk.N.".
const std::pair<const char*, const char*> kQwen35Renames[] = {
    {"ssm_qkv.weight", "attn_qkv.weight"},
    {"ssm_gate.weight", "attn_gate.weight"},
    {"ffn_norm.weight", "post_attention_norm.weight"},
    {"ssm_a_log", "ssm_a"},
};

// "blk.N." prefix length of `name`, 0 when it has none.
size_t block_prefix(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return 0;
  const size_t dot = name.find('.', 4);
  return dot == std::string::npos ? 0 : dot + 1;
}

}  // namespace

std::string gguf_tensor_name(const ModelConfig& c, const std::string& name) {
  const size_t p = block_prefix(name);
  if (!is_qwen35(c) || p == 0) return name;
  for (const auto& [internal, gguf] : kQwen35Renames)
    if (name.compare(p, std::string::npos, internal) == 0) return name.substr(0, p) + gguf;
  return name;
}

std::string internal_tensor_name(const ModelConfig& c, const std::string& gguf_name) {
  std::string name = gguf_name;
  const size_t p = block_prefix(gguf_name);
  if (is_qwen35(c) && p != 0) {
    for (const auto& [internal, gguf] : kQwen35Renames)
      if (gguf_name.compare(p, std::string::npos, gguf) == 0) name = gguf_name.substr(0, p) + internal;
  }
  for (const TensorSpec& s : model_tensor_specs(c))
    if (s.name == name) return name;
  return "";
}

std::vector<int64_t> gguf_v_head_order(const ModelConfig& c) {
  const int64_t nk = c.linear_num_key_heads, nv = c.linear_num_value_heads;
  if (!c.has_mixer(MixerKind::GatedDeltaNet) || nk <= 0 || nv == nk) return {};
  // tune head g*r + j (key head g, j-th of its r value heads) sits at llama.cpp position j*nk + g.
  const int64_t r = nv / nk;
  std::vector<int64_t> order(static_cast<size_t>(nv));
  for (int64_t h = 0; h < nv; ++h) order[size_t(h)] = (h % nk) * r + h / nk;
  return order;
}

std::vector<int64_t> gguf_column_order(const ModelConfig& c, const std::string& gguf_name) {
  const std::string suffix = "ssm_out.weight";
  if (gguf_name.size() < suffix.size() || gguf_name.compare(gguf_name.size() - suffix.size(), suffix.size(), suffix))
    return {};
  const std::vector<int64_t> heads = gguf_v_head_order(c);
  if (heads.empty()) return {};
  const int64_t dv = c.linear_value_head_dim;
  std::vector<int64_t> cols;
  cols.reserve(heads.size() * size_t(dv));
  for (int64_t h : heads)
    for (int64_t i = 0; i < dv; ++i) cols.push_back(h * dv + i);
  return cols;
}

std::vector<int64_t> gguf_row_order(const ModelConfig& c, const std::string& gguf_name) {
  const std::vector<int64_t> heads = gguf_v_head_order(c);
  const size_t p = block_prefix(gguf_name);
  if (heads.empty() || p == 0) return {};
  const std::string t = gguf_name.substr(p);
  const int64_t dv = c.linear_value_head_dim, key_dim = c.linear_num_key_heads * c.linear_key_head_dim;
  std::vector<int64_t> rows;
  if (t == "attn_qkv.weight" || t == "ssm_conv1d.weight" || t == "attn_gate.weight") {
    const int64_t v0 = t == "attn_gate.weight" ? 0 : 2 * key_dim;  // q and k channels keep their order
    for (int64_t i = 0; i < v0; ++i) rows.push_back(i);
    for (int64_t h : heads)
      for (int64_t i = 0; i < dv; ++i) rows.push_back(v0 + h * dv + i);
  } else if (t == "ssm_alpha.weight" || t == "ssm_beta.weight" || t == "ssm_dt.bias" || t == "ssm_a") {
    rows = heads;
  }
  return rows;
}

bool hf_name_is_skipped(const std::string& n) {
  return n.rfind("model.visual.", 0) == 0 || n.rfind("mtp.", 0) == 0 || n.rfind("visual.", 0) == 0 ||
         n.find("rotary_emb.inv_freq") != std::string::npos;
}

}  // namespace tune
