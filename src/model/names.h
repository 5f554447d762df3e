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

}  // namespace tune
