// Export of a qwen2 / qwen3 / qwen3moe / Qwen3.5 (qwen35, qwen35moe) Model as a GGUF v3 file the way llama.cpp's
// converter and llama-quantize write it: the `general.*` and `<arch>.*` keys, the byte-level BPE vocabulary (`tokenizer.ggml.*`, padded to
// the model's vocab size with "[PAD<id>]" user-defined tokens), the chat template, and every weight under its
// internal (= GGUF) name, quantized per llama.cpp's file-type mix (llama_tensor_get_type: output / tied
// embedding in Q6_K, more bits for attn_v and ffn_down in use_more_bits layers, the 32-block fallbacks when a
// row is not a multiple of 256, F16 when not even 32 divides it). Depends on io/gguf, quant, model, tokenizer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace tune {

enum class GgufFileType { F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K };

// "f32", "F16", "q4_k_m", "Q4_K_M", ... (case-insensitive); ConfigError listing the choices otherwise.
GgufFileType gguf_file_type_parse(const std::string& s);
const char* gguf_file_type_name(GgufFileType t);  // "Q4_K_M"
uint32_t gguf_llama_ftype(GgufFileType t);        // general.file_type (llama_ftype): F16 = 1, Q4_K_M = 15, ...

// The llama.cpp architecture string: "qwen2", "qwen3", "qwen3moe", "qwen35", "qwen35moe".
const char* gguf_arch_name(const ModelConfig& c);


// The ggml type llama.cpp gives tensor `name` (tune shape `shape`) in a file of type `ft`. `counters` carries
// llama-quantize's running attn_v / ffn_down indices: call in file order with one struct per file.
struct GgufTypeCounters {
  int i_attention_wv = 0, i_ffn_down = 0;
};
DType gguf_tensor_type(GgufFileType ft, const ModelConfig& c, const std::string& name, const Shape& shape,
                       GgufTypeCounters& counters);

struct GgufExportOptions {
  GgufFileType type = GgufFileType::F16;
  std::string name;           // general.name ("" = not written)
  std::string chat_template;  // tokenizer.chat_template ("" = not written)
  // Added tokens of the tokenizer (from tokenizer.json): special ones become CONTROL, the others USER_DEFINED
  // (CONTROL when they look like "<|...|>", as the converter does). Empty: Tokenizer::is_special decides.
  std::vector<AddedTokenSpec> added_tokens;
  // Per-column importance (imatrix) by GGUF tensor name, as llama-quantize --imatrix uses it: ne[0]·ne[2] values
  // (one vector per expert of a 3-D tensor) for each tensor quantized to a block type that has an entry; a
  // tensor without one is quantized without (noted in the progress line); a size mismatch is a ConfigError
  // (ignored for token_embd.weight, as llama-quantize does), a non-finite value too.
  const std::map<std::string, std::vector<float>>* imatrix = nullptr;
  // Written as quantize.imatrix.file / .dataset / .entries_count / .chunks_count when `imatrix` is set.
  std::string imatrix_file, imatrix_dataset;
  int64_t imatrix_chunks = 0;
  std::function<void(const std::string&)> progress;  // one line per tensor (null = quiet)
};

// Writes `model` (f32 weights on the CPU) to `path`. `tokenizer` null: a byte-level vocabulary of the first
// min(V, 256) bytes (no merges) plus "[PAD<id>]" tokens, enough for llama.cpp to load the file.
void gguf_export(const Model& model, const Tokenizer* tokenizer, const std::string& path,
                 const GgufExportOptions& options);

}  // namespace tune

namespace tune {

// llama-quantize's job: copies every key of `in_path` (general.file_type and quantization_version updated) and
// re-encodes each tensor from its dequantized f32 values with the types of file type `options.type`, using
// `options.imatrix` as gguf_export does (options.name, chat_template and added_tokens are not used).
void gguf_requantize(const std::string& in_path, const std::string& out_path, const GgufExportOptions& options);

}  // namespace tune
