// LoRA merge into a Hugging Face checkpoint.
#include "export/merge.h"

#include <filesystem>
#include <cstring>
#include <map>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/lora_peft.h"
#include "ops/linear.h"

namespace fs = std::filesystem;

namespace tune {

namespace {
const char* kCopiedFiles[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "vocab.json",
                              "merges.txt", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
                              "preprocessor_config.json", "video_preprocessor_config.json"};
// s * B A: A (r, in), B (out, r) -> (out, in).
Tensor lora_delta(const Tensor& A, const Tensor& B, float s) {
  const int64_t out = B.size(0), in = A.size(1), r = A.size(0);
  // B A as a linear: rows of A^T (in, r) times B^T -> (in, out); transposed once into (out, in).
  Tensor at = Tensor::empty(DType::F32, {in, r}), prod = Tensor::empty(DType::F32, {in, out});
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < r; ++j) at.f32()[i * r + j] = A.f32()[j * in + i];
  linear_fwd(at, B, nullptr, prod);
  Tensor d = Tensor::empty(DType::F32, {out, in});
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) d.f32()[o * in + i] = s * prod.f32()[i * out + o];
  return d;
}

Tensor expert(const Tensor& t, int64_t e) { return t.slice_rows(e, e + 1).reshape({t.size(1), t.size(2)}); }

}  // namespace

namespace {

// The layer weight a dense LoRA target adapts.
Tensor* target_weight(LayerWeights& L, LoraTarget t) {
  switch (t) {
    case LoraTarget::Q: return &L.attn_q;
    case LoraTarget::K: return &L.attn_k;
    case LoraTarget::V: return &L.attn_v;
    case LoraTarget::O: return &L.attn_output;
    case LoraTarget::Gate: return &L.ffn_gate;
    case LoraTarget::Up: return &L.ffn_up;
    case LoraTarget::Down: return &L.ffn_down;
    case LoraTarget::LinQkv: return &L.ssm_qkv;
    case LoraTarget::LinZ: return &L.ssm_gate;
    case LoraTarget::LinOut: return &L.ssm_out;
    case LoraTarget::LinA: return &L.ssm_alpha;
    case LoraTarget::LinB: return &L.ssm_beta;
    case LoraTarget::SharedGate: return &L.ffn_gate_shexp;
    case LoraTarget::SharedUp: return &L.ffn_up_shexp;
    case LoraTarget::SharedDown: return &L.ffn_down_shexp;
    case LoraTarget::ExpertsGateUp:
    case LoraTarget::ExpertsDown: return nullptr;
  }
  return nullptr;
}

void add_delta(Tensor& w, const Tensor& delta) {
  for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] += delta.f32()[i];
}

}  // namespace

void lora_merge_into(Model& model, const LoraAdapter& adapter) {
  const float s = float(adapter.config.scale());
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    LayerWeights& L = model.weights.layers[l];
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraWeights& lw = adapter.layers[l][size_t(t)];
      if (!lw.defined()) continue;
      if (Tensor* W = target_weight(L, LoraTarget(t))) {
        *W = W->to(DType::F32);  // a copy: weights may map a read-only file
        add_delta(*W, lora_delta(lw.A, lw.B, s));
        continue;
      }
      // Experts: A (E, r, in), B (E, out, r); gate_up's rows are [gate (I) | up (I)].
      const bool gate_up = LoraTarget(t) == LoraTarget::ExpertsGateUp;
      Tensor& first = gate_up ? L.ffn_gate_exps : L.ffn_down_exps;
      first = first.to(DType::F32);
      if (gate_up) L.ffn_up_exps = L.ffn_up_exps.to(DType::F32);
      for (int64_t e = 0; e < lw.A.size(0); ++e) {
        const Tensor d = lora_delta(expert(lw.A, e), expert(lw.B, e), s);
        const int64_t rows = first.size(1);
        Tensor w0 = expert(first, e);
        add_delta(w0, d.slice_rows(0, rows));
        if (gate_up) {
          Tensor w1 = expert(L.ffn_up_exps, e);
          add_delta(w1, d.slice_rows(rows, 2 * rows));
        }
      }
    }
  }
}

void merge_lora_to_hf(const std::string& model_dir, const Model& model, const LoraAdapter& adapter,
                      const std::string& out_dir, DType dtype) {
  if (fs::exists(out_dir) && fs::equivalent(model_dir, out_dir))
    throw ConfigError("--out must differ from --model", "merge into a new directory");
  if (dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::F32)
    throw ConfigError(std::string("merge dtype must be bf16, f16 or f32, got ") + dtype_name(dtype));
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(model_dir);
  // HF weight name -> delta = s * B A for every targeted linear; expert deltas go to the fused expert tensors
  // ([E, 2I, H] gate rows first, [E, H, I]) or to the per-expert ones, whichever the checkpoint has.
  std::map<std::string, Tensor> delta;
  const float s = float(adapter.config.scale());
  const std::string prefix = model.report.hf_prefix.empty() ? "model." : model.report.hf_prefix;
  for (size_t l = 0; l < adapter.layers.size(); ++l)
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) continue;
      if (!lora_target_is_expert(LoraTarget(t))) {
        const std::string name =
            lora_peft_module(model, int64_t(l), LoraTarget(t)).substr(std::string("base_model.model.").size());
        delta.emplace(name + ".weight", lora_delta(w.A, w.B, s));
        continue;
      }
      const bool gate_up = t == int(LoraTarget::ExpertsGateUp);
      const std::string base = prefix + "layers." + std::to_string(l) + ".mlp.experts.";
      const int64_t E = w.A.size(0), out = w.B.size(1), in = w.A.size(2);
      const std::string fused = base + (gate_up ? "gate_up_proj" : "down_proj");
      if (ck.has(fused)) {
        Tensor d = Tensor::empty(DType::F32, {E, out, in});
        for (int64_t e = 0; e < E; ++e) {
          const Tensor de = lora_delta(expert(w.A, e), expert(w.B, e), s);
          std::memcpy(d.f32() + e * out * in, de.f32(), size_t(out * in) * 4);
        }
        delta.emplace(fused, d);
        continue;
      }
      for (int64_t e = 0; e < E; ++e) {
        const Tensor de = lora_delta(expert(w.A, e), expert(w.B, e), s);
        const std::string pe = base + std::to_string(e) + ".";
        if (gate_up) {
          delta.emplace(pe + "gate_proj.weight", de.slice_rows(0, out / 2).clone());
          delta.emplace(pe + "up_proj.weight", de.slice_rows(out / 2, out).clone());
        } else {
          delta.emplace(pe + "down_proj.weight", de);
        }
      }
    }

  NamedTensors out;
  size_t merged = 0;
  for (const auto& [name, e] : ck.entries()) {
    auto it = delta.find(name);
    if (it == delta.end()) {
      // Non-float tensors and untouched weights keep their bytes unless a float dtype change is asked for.
      const bool is_float = e.dtype == DType::F32 || e.dtype == DType::BF16 || e.dtype == DType::F16;
      out.emplace_back(name, is_float && e.dtype != dtype ? e.tensor.to(dtype) : e.tensor);
      continue;
    }
    Tensor w = e.tensor.to(DType::F32);
    TUNE_CHECK(w.shape() == it->second.shape()) << name << ": adapter delta " << it->second.shape().str();
    for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] += it->second.f32()[i];
    out.emplace_back(name, w.to(dtype));
    ++merged;
  }
  TUNE_CHECK(merged == delta.size()) << "merged " << merged << " of " << delta.size() << " adapted weights";

  fs::create_directories(out_dir);
  safetensors_write_checkpoint(out_dir, out, size_t(5) << 30, {{"format", "pt"}});
  Json cfg = json_load_file((fs::path(model_dir) / "config.json").string());
  const char* dt = dtype == DType::BF16 ? "bfloat16" : dtype == DType::F16 ? "float16" : "float32";
  cfg["dtype"] = dt;
  if (cfg.contains("text_config") && cfg["text_config"].is_object()) cfg["text_config"]["dtype"] = dt;
  json_save_file((fs::path(out_dir) / "config.json").string(), cfg);
  for (const char* f : kCopiedFiles) {
    const fs::path src = fs::path(model_dir) / f;
    if (fs::exists(src)) fs::copy_file(src, fs::path(out_dir) / f, fs::copy_options::overwrite_existing);
  }
}

}  // namespace tune
