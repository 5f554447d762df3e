// The one table of a model's tensors: internal (GGUF-style) name, Hugging Face name, shape and the weights field
// it fills. Loading, saving, counting parameters and export all walk this table.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace tune {

// How a tensor is stored in an HF checkpoint. MoE experts are either one tensor per expert
// (`mlp.experts.E.gate_proj.weight`, as Qwen3-MoE releases) or fused 3-D tensors (`mlp.experts.gate_up_proj`
// [E, 2*I, H], gate rows first, and `mlp.experts.down_proj` [E, H, I], as transformers 5 and Qwen3.5 store them).
enum class HfLayout { Plain, ExpertsGate, ExpertsUp, ExpertsDown };

struct TensorSpec {
  std::string name;     // internal, e.g. "blk.3.attn_q.weight"
  std::string hf_name;  // relative to the language-model prefix ("layers.3.self_attn.q_proj.weight"), except
                        // lm_head.weight, which is absolute
  bool hf_absolute = false;
  HfLayout layout = HfLayout::Plain;
  Shape shape;     // tune's shape
  Shape hf_shape;  // shape in the HF checkpoint (differs for conv1d's middle 1)
  int layer = -1;  // -1 for model-level tensors
  Tensor LayerWeights::*layer_field = nullptr;
  Tensor ModelWeights::*model_field = nullptr;
};

// Every tensor the model needs, in checkpoint order; the output head only when embeddings are untied.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c);

Tensor& weights_field(ModelWeights& w, const TensorSpec& s);
const Tensor& weights_field(const ModelWeights& w, const TensorSpec& s);

// HF checkpoint prefixes of tensors that text-only work skips: the vision tower and the MTP head.
bool hf_name_is_skipped(const std::string& hf_name);

// The name llama.cpp gives internal tensor `name` in a GGUF file: the same for qwen2 / qwen3 / qwen3moe;
// Qwen3.5 (qwen35, qwen35moe) renames ssm_qkv -> attn_qkv, ssm_gate -> attn_gate, ffn_norm ->
// post_attention_norm and ssm_a_log -> ssm_a.
std::string gguf_tensor_name(const ModelConfig& c, const std::string& name);
// The inverse: the internal name of GGUF tensor `gguf_name` ("" when c has no such tensor).
std::string internal_tensor_name(const ModelConfig& c, const std::string& gguf_name);

// Qwen3.5's Gated DeltaNet with fewer key heads than value heads: tune keeps the value heads grouped by key head
// (value head h reads key head h / (nV/nK), as transformers' repeat_interleave), llama.cpp tiles them (head h
// reads key head h % nK, as ggml_repeat), so its converter reorders every value-head axis. Element h of the
// result is the tune head stored at llama.cpp's head position h; empty when nV == nK (no reordering).
std::vector<int64_t> gguf_v_head_order(const ModelConfig& c);

// For each column of GGUF tensor `gguf_name` (its ne[0] axis), the column of the tune tensor it comes from:
// the value-head reorder of ssm_out's input; empty when the columns keep their order.
std::vector<int64_t> gguf_column_order(const ModelConfig& c, const std::string& gguf_name);
// Likewise for the outermost axis (rows of a matrix, elements of a vector): the value rows of attn_qkv and of
// ssm_conv1d's channels, attn_gate's rows, and the per-head ssm_alpha, ssm_beta, ssm_dt.bias and ssm_a.
std::vector<int64_t> gguf_row_order(const ModelConfig& c, const std::string& gguf_name);

}  // namespace tune
