// LoRA merge into a Hugging Face checkpoint.
#include "export/merge.h"

#include <filesystem>
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
}  // namespace

void merge_lora_to_hf(const std::string& model_dir, const Model& model, const LoraAdapter& adapter,
                      const std::string& out_dir, DType dtype) {
  if (fs::exists(out_dir) && fs::equivalent(model_dir, out_dir))
    throw ConfigError("--out must differ from --model", "merge into a new directory");
  if (dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::F32)
    throw ConfigError(std::string("merge dtype must be bf16, f16 or f32, got ") + dtype_name(dtype));
  // HF weight name -> delta = s * B A (out, in) for every targeted linear.
  std::map<std::string, Tensor> delta;
  const float s = float(adapter.config.scale());
  for (size_t l = 0; l < adapter.layers.size(); ++l)
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) continue;
      // B A as a linear: rows of A^T (in, r) times B^T -> (in, out); transpose once into (out, in).
      const int64_t out = w.B.size(0), in = w.A.size(1), r = w.A.size(0);
      Tensor at = Tensor::empty(DType::F32, {in, r}), prod = Tensor::empty(DType::F32, {in, out});
      for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < r; ++j) at.f32()[i * r + j] = w.A.f32()[j * in + i];
      linear_fwd(at, w.B, nullptr, prod);
      Tensor d = Tensor::empty(DType::F32, {out, in});
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) d.f32()[o * in + i] = s * prod.f32()[i * out + o];
      std::string name = lora_peft_module(model, int64_t(l), LoraTarget(t)).substr(std::string("base_model.model.").size());
      delta.emplace(name + ".weight", d);
    }

  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(model_dir);
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
