// LoRA adapters as llama.cpp GGUF adapters, laid out as convert_lora_to_gguf.py writes them: keys
// general.architecture (the base model's llama.cpp arch), general.type = "adapter", adapter.type = "lora",
// general.name, adapter.lora.alpha (f32), general.quantization_version; for each adapted weight W (its GGUF name)
// the pair W.lora_a = PEFT's A [r, in] (ne {in, r}) and W.lora_b = PEFT's B [out, r] (ne {r, out}).
// llama.cpp adds (alpha / r) · B (A x) to W x with r = lora_b.ne[0], so an rsLoRA adapter (PEFT scale
// alpha / sqrt(r)) is written with alpha · sqrt(r): llama.cpp then applies PEFT's scale (the converter would
// write alpha as is, and llama.cpp would apply alpha / r). MoE experts get 3-D pairs, A {in, r, E} and
// B {r, out, E}, which llama.cpp applies through its mul_mat_id LoRA path; the fused gate_up B splits into the
// gate and up halves, both paired with the shared A. Qwen3.5's value-head reorder (names.h) permutes B's rows and
// A's columns as it permutes the weights. Depends on io/gguf, quant, model.
#pragma once

#include <string>

#include "model/lora.h"
#include "model/model.h"

namespace tune {

struct LoraGgufOptions {
  // F32 (the converter's default), F16, BF16 or Q8_0 (F16 for a tensor whose rows are no multiple of 32, as the
  // converter falls back).
  DType type = DType::F32;
  std::string name;  // general.name ("" = not written)
};

// Writes `adapter` (whose base is `model`; only its config is read) to `path`. UnsupportedError for a base
// architecture llama.cpp's GGUF export does not cover.
void lora_export_gguf(const LoraAdapter& adapter, const Model& model, const std::string& path,
                      const LoraGgufOptions& options);

}  // namespace tune
