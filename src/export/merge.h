// Merging a LoRA adapter into its base model: W' = W + s * B A for every targeted linear, written as a Hugging Face
// checkpoint that keeps every other tensor of the original (vision tower, MTP head, expert layout) as it was.
#pragma once

#include <string>

#include "model/lora.h"
#include "model/model.h"

namespace tune {

// Writes OUT/config.json (the original, with its dtype updated), the merged safetensors (sharded like
// transformers above 5 GB) and copies of the tokenizer and generation files.
void merge_lora_to_hf(const std::string& model_dir, const Model& model, const LoraAdapter& adapter,
                      const std::string& out_dir, DType dtype = DType::BF16);

// W += s * B A in `model`'s own weights (converted to f32) for every adapted linear and expert, as a merged
// checkpoint would hold them; for exporting a fine-tuned model straight from memory.
void lora_merge_into(Model& model, const LoraAdapter& adapter);

}  // namespace tune
