// LoRA adapter -> llama.cpp adapter GGUF.
#include "export/lora_gguf.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "export/gguf_export.h"
#include "io/gguf.h"
#include "model/names.h"
#include "quant/quant.h"

namespace tune {

namespace {

// The LoRA target adapting internal weight `suffix` (after "blk.N."), and for the fused expert gate_up B which
// half: 0 = all rows, 1 = gate rows [0, I), 2 = up rows [I, 2I).
struct TargetOf {
  const char* suffix;
  LoraTarget target;
  int half;
};
const TargetOf kTargets[] = {
    {"attn_q.weight", LoraTarget::Q, 0},           {"attn_k.weight", LoraTarget::K, 0},
    {"attn_v.weight", LoraTarget::V, 0},           {"attn_output.weight", LoraTarget::O, 0},
    {"ssm_qkv.weight", LoraTarget::LinQkv, 0},     {"ssm_gate.weight", LoraTarget::LinZ, 0},
    {"ssm_beta.weight", LoraTarget::LinB, 0},      {"ssm_alpha.weight", LoraTarget::LinA, 0},
    {"ssm_out.weight", LoraTarget::LinOut, 0},     {"ffn_gate.weight", LoraTarget::Gate, 0},
    {"ffn_up.weight", LoraTarget::Up, 0},          {"ffn_down.weight", LoraTarget::Down, 0},
    {"ffn_gate_exps.weight", LoraTarget::ExpertsGateUp, 1},
    {"ffn_up_exps.weight", LoraTarget::ExpertsGateUp, 2},
    {"ffn_down_exps.weight", LoraTarget::ExpertsDown, 0},
    {"ffn_gate_shexp.weight", LoraTarget::SharedGate, 0},
    {"ffn_up_shexp.weight", LoraTarget::SharedUp, 0},
    {"ffn_down_shexp.weight", LoraTarget::SharedDown, 0},
};

// A [(E,) r, in] with its columns in GGUF order.
Tensor lora_a(const Tensor& A, const std::vector<int64_t>& cols) {
  Tensor out = A.clone();
  if (cols.empty()) return out;
  const int64_t in = A.size(A.ndim() - 1), rows = A.numel() / in;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < in; ++j) out.f32()[r * in + j] = A.f32()[r * in + cols[size_t(j)]];
  return out;
}

// Rows [row0, row0 + n) of each expert's B [(E,) out, r], in GGUF order.
Tensor lora_b(const Tensor& B, int64_t row0, int64_t n, const std::vector<int64_t>& rows) {
  const bool experts = B.ndim() == 3;
  TUNE_CHECK(experts || B.ndim() == 2) << "LoRA B has shape " << B.shape().str();
  const int64_t E = experts ? B.size(0) : 1, out_rows = experts ? B.size(1) : B.size(0),
                r = experts ? B.size(2) : B.size(1);
  Tensor out = Tensor::empty(DType::F32, experts ? Shape{E, n, r} : Shape{n, r});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t src = row0 + (rows.empty() ? i : rows[size_t(i)]);
      std::memcpy(out.f32() + (e * n + i) * r, B.f32() + (e * out_rows + src) * r, size_t(r) * 4);
    }
  return out;
}

// The converter's output types: Q8_0 needs rows of whole 32-blocks, F16 otherwise.
Tensor encode(const Tensor& t, DType type) {
  if (type == DType::F32) return t;
  if (type == DType::Q8_0 && t.size(t.ndim() - 1) % 32 != 0) type = DType::F16;
  return quantize(t, type);
}

}  // namespace

void lora_export_gguf(const LoraAdapter& adapter, const Model& model, const std::string& path,
                      const LoraGgufOptions& o) {
  if (o.type != DType::F32 && o.type != DType::F16 && o.type != DType::BF16 && o.type != DType::Q8_0)
    throw ConfigError(std::string("LoRA GGUF type ") + dtype_name(o.type) + " is not one of F32, F16, BF16, Q8_0");
  const ModelConfig& c = model.config;
  const LoraConfig& lc = adapter.config;
  if (int64_t(adapter.layers.size()) != c.num_layers)
    throw ConfigError("the adapter has " + std::to_string(adapter.layers.size()) + " layers, the model " +
                      std::to_string(c.num_layers));
  GgufWriter w;
  w.set("general.architecture", GgufValue::string(gguf_arch_name(c)));
  w.set("general.type", GgufValue::string("adapter"));
  w.set("adapter.type", GgufValue::string("lora"));
  if (!o.name.empty()) w.set("general.name", GgufValue::string(o.name));
  // llama.cpp scales by alpha / r: rsLoRA's alpha / sqrt(r) needs alpha · sqrt(r).
  const double alpha = lc.rslora ? lc.alpha * std::sqrt(double(lc.rank)) : lc.alpha;
  w.set("adapter.lora.alpha", GgufValue::f32(float(alpha)));
  w.set("general.quantization_version", GgufValue::u32(2));

  // In the base model's tensor order.
  for (const TensorSpec& s : model_tensor_specs(c)) {
    if (s.layer < 0) continue;
    const std::string suffix = s.name.substr(s.name.find('.', 4) + 1);
    for (const TargetOf& t : kTargets) {
      if (suffix != t.suffix) continue;
      const LoraWeights& lw = adapter.layers[size_t(s.layer)][size_t(t.target)];
      if (!lw.defined()) continue;
      const std::string name = gguf_tensor_name(c, s.name);
      const int64_t out_rows = lw.B.size(lw.B.ndim() - 2);
      const int64_t n = t.half == 0 ? out_rows : out_rows / 2, row0 = t.half == 2 ? n : 0;
      w.add_tensor(name + ".lora_a", encode(lora_a(lw.A, gguf_column_order(c, name)), o.type));
      w.add_tensor(name + ".lora_b", encode(lora_b(lw.B, row0, n, gguf_row_order(c, name)), o.type));
    }
  }
  if (w.tensor_count() == 0) throw ConfigError("the adapter adapts no weight of the model");
  w.write(path);
}

}  // namespace tune
