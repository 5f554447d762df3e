// Loading and saving Hugging Face checkpoints through the tensor table, and seeded random initialization.
#include "model/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/names.h"

namespace tune {

int64_t Model::num_parameters() const {
  int64_t n = 0;
  for (const TensorSpec& s : model_tensor_specs(config)) n += s.shape.numel();
  return n;
}

namespace {

const char* kMismatchHint = "config.json does not match the weights; use the config that came with them";

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

const SafetensorsEntry& get_checked(const SafetensorsCheckpoint& ck, const std::string& name, const Shape& shape,
                                    std::set<std::string>& used) {
  const SafetensorsEntry& e = ck.get(name);
  if (e.shape != shape) {
    throw ConfigError(e.file + ": tensor '" + name + "' has shape " + e.shape.str() + ", config.json implies " +
                          shape.str(),
                      kMismatchHint);
  }
  if (!is_float(e.dtype)) {
    throw FormatError(e.file + ": tensor '" + name + "' has dtype " + dtype_to_safetensors(e.dtype) +
                          "; weights must be F32, F16 or BF16",
                      "the checkpoint is corrupt or not a model checkpoint");
  }
  used.insert(name);
  return e;
}

// Copies `rows` rows of `row_elems` elements from a float tensor of any dtype into f32 memory.
void convert_rows(const Tensor& src, int64_t src_row0, int64_t rows, int64_t row_elems, float* dst) {
  const int64_t n = rows * row_elems, off = src_row0 * row_elems;
  const void* p = static_cast<const char*>(src.data()) + dtype_bytes(src.dtype(), off);
  switch (src.dtype()) {
    case DType::F32: std::memcpy(dst, p, size_t(n) * 4); return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(p)[i]);
      return;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) dst[i] = float(static_cast<const double*>(p)[i]);
      return;
    default: TUNE_CHECK(false) << "convert_rows from " << dtype_name(src.dtype());
  }
}

// Builds one MoE expert tensor [E, rows, cols] from the fused or per-expert checkpoint layout.
Tensor load_experts(const SafetensorsCheckpoint& ck, const std::string& base, const TensorSpec& s,
                    const ModelConfig& c, bool with_data, std::set<std::string>& used, std::string* layout) {
  const int64_t E = s.shape[0], rows = s.shape[1], cols = s.shape[2], I = c.moe_intermediate_size;
  Tensor out = with_data ? Tensor::empty(DType::F32, s.shape) : Tensor();
  const bool down = s.layout == HfLayout::ExpertsDown;
  const std::string fused = base + (down ? ".down_proj" : ".gate_up_proj");
  if (ck.has(fused)) {
    *layout = "fused";
    const Shape fshape = down ? Shape{E, rows, cols} : Shape{E, 2 * I, cols};
    const Tensor& t = get_checked(ck, fused, fshape, used).tensor;
    const int64_t row0 = s.layout == HfLayout::ExpertsUp ? I : 0;
    for (int64_t e = 0; with_data && e < E; ++e)
      convert_rows(t, e * fshape[1] + row0, rows, cols, out.f32() + e * rows * cols);
  } else {
    *layout = "per-expert";
    const char* proj = s.layout == HfLayout::ExpertsGate ? "gate_proj" : s.layout == HfLayout::ExpertsUp ? "up_proj"
                                                                                                          : "down_proj";
    for (int64_t e = 0; e < E; ++e) {
      const std::string name = base + "." + std::to_string(e) + "." + proj + ".weight";
      if (!ck.has(name)) {
        throw FormatError(ck.source() + ": tensor '" + name + "' is missing (and no fused '" + fused + "')",
                          kMismatchHint);
      }
      const Tensor& t = get_checked(ck, name, Shape{rows, cols}, used).tensor;
      if (with_data) convert_rows(t, 0, rows, cols, out.f32() + e * rows * cols);
    }
  }
  return out;
}

}  // namespace

Model model_load(const std::string& dir, DType dtype, Device device, bool with_data) {
  Model m;
  m.config = model_config_load(dir);
  const ModelConfig& c = m.config;
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
  LoadReport& r = m.report;
  r.source = dir;
  r.hf_prefix = ck.has("model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";

  std::set<std::string> used;
  m.weights.layers.resize(size_t(c.num_layers));
  for (const TensorSpec& s : model_tensor_specs(c)) {
    const std::string name = s.hf_absolute ? s.hf_name : r.hf_prefix + s.hf_name;
    Tensor t;
    if (s.layout == HfLayout::Plain) {
      if (!ck.has(name)) {
        const char* hint = s.model_field == &ModelWeights::output
                               ? "the checkpoint has no lm_head: set \"tie_word_embeddings\": true if it shares "
                                 "the embedding"
                               : kMismatchHint;
        throw FormatError(ck.source() + ": tensor '" + name + "' is missing", hint);
      }
      const SafetensorsEntry& e = get_checked(ck, name, s.hf_shape, used);
      r.dtype_params[dtype_name(e.dtype)] += e.shape.numel();
      if (with_data) {
        t = Tensor::empty(DType::F32, s.shape);
        convert_rows(e.tensor, 0, 1, s.shape.numel(), t.f32());
      }
    } else {
      t = load_experts(ck, name, s, c, with_data, used, &r.experts_layout);
      r.dtype_params["(experts)"] += s.shape.numel();
    }
    if (with_data && (dtype != DType::F32 || device != Device::CPU)) t = t.to(dtype, device);
    weights_field(m.weights, s) = std::move(t);
  }
  if (c.tie_word_embeddings) m.weights.output = m.weights.token_embd;
  // Attribute expert parameters to their checkpoint dtype.
  if (auto it = r.dtype_params.find("(experts)"); it != r.dtype_params.end()) {
    const int64_t n = it->second;
    r.dtype_params.erase(it);
    for (const std::string& u : used)
      if (u.find(".experts.") != std::string::npos) {
        r.dtype_params[dtype_name(ck.get(u).dtype)] += n;
        break;
      }
  }
  for (const auto& [name, e] : ck.entries()) {
    if (used.count(name)) continue;
    if (hf_name_is_skipped(name)) {
      ++r.skipped_tensors;
      r.skipped_params += e.shape.numel();
    } else if (!(c.tie_word_embeddings && name == "lm_head.weight")) {
      r.unused.push_back(name);
    }
  }
  return m;
}

Model model_random(const ModelConfig& config, uint64_t seed, float std) {
  Model m;
  m.config = config;
  m.report.source = "random (seed " + std::to_string(seed) + ")";
  m.weights.layers.resize(size_t(config.num_layers));
  Rng rng(seed);
  for (const TensorSpec& s : model_tensor_specs(config)) {
    Tensor t = Tensor::empty(DType::F32, s.shape);
    float* p = t.f32();
    const bool is_norm = s.name.find("norm") != std::string::npos;
    // Norm weights centre on 1 (or 0 for zero-centred norms, whose effective scale is 1 + w); A_log on log(1..16).
    const float centre = is_norm && !(config.norm_zero_centered && s.name.find("ssm_norm") == std::string::npos)
                             ? 1.0f
                             : 0.0f;
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = centre + std * rng.normal();
    if (s.name.find("ssm_a_log") != std::string::npos)
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = std::log(1.0f + 15.0f * rng.uniform());
    weights_field(m.weights, s) = std::move(t);
  }
  if (config.tie_word_embeddings) m.weights.output = m.weights.token_embd;
  return m;
}

void model_save_hf(const Model& model, const std::string& dir, DType dtype, size_t max_shard_bytes) {
  const ModelConfig& c = model.config;
  const bool qwen35 = c.arch == Arch::Qwen3_5 || c.arch == Arch::Qwen3_5Moe;
  const std::string prefix = qwen35 ? "model.language_model." : "model.";
  NamedTensors out;
  for (const TensorSpec& s : model_tensor_specs(c)) {
    const Tensor& t = weights_field(model.weights, s);
    const std::string name = s.hf_absolute ? s.hf_name : prefix + s.hf_name;
    if (s.layout == HfLayout::Plain) {
      out.emplace_back(name, t.to(dtype).reshape(s.hf_shape));
      continue;
    }
    const int64_t E = s.shape[0];
    if (qwen35) {  // fused: gate_up_proj [E, 2I, H] written once, at the gate entry
      if (s.layout == HfLayout::ExpertsUp) continue;
      if (s.layout == HfLayout::ExpertsDown) {
        out.emplace_back(name + ".down_proj", t.to(dtype));
        continue;
      }
      const Tensor gate = t.to(DType::F32), up = model.weights.layers[size_t(s.layer)].ffn_up_exps.to(DType::F32);
      const int64_t rows = s.shape[1], cols = s.shape[2];
      Tensor fused = Tensor::empty(DType::F32, {E, 2 * rows, cols});
      for (int64_t e = 0; e < E; ++e) {
        const size_t n = size_t(rows * cols) * 4;
        std::memcpy(fused.f32() + (2 * e) * rows * cols, gate.f32() + e * rows * cols, n);
        std::memcpy(fused.f32() + (2 * e + 1) * rows * cols, up.f32() + e * rows * cols, n);
      }
      out.emplace_back(name + ".gate_up_proj", fused.to(dtype));
      continue;
    }
    const char* proj = s.layout == HfLayout::ExpertsGate ? "gate_proj" : s.layout == HfLayout::ExpertsUp ? "up_proj"
                                                                                                          : "down_proj";
    const Tensor conv = t.to(dtype);
    for (int64_t e = 0; e < E; ++e)
      out.emplace_back(name + "." + std::to_string(e) + "." + proj + ".weight",
                       conv.slice_rows(e, e + 1).reshape({s.shape[1], s.shape[2]}));
  }
  std::filesystem::create_directories(dir);
  safetensors_write_checkpoint(dir, out, max_shard_bytes, {{"format", "pt"}});
  Json cfg = model_config_to_json(c);
  const char* dt = dtype == DType::BF16 ? "bfloat16" : dtype == DType::F16 ? "float16" : "float32";
  (cfg.contains("text_config") ? cfg["text_config"] : cfg)["dtype"] = dt;
  json_save_file((std::filesystem::path(dir) / "config.json").string(), cfg);
}

}  // namespace tune
