// Loading a qwen2 / qwen3 / qwen3moe / qwen35 / qwen35moe GGUF (tune's or llama.cpp's) into a Model: the
// ModelConfig comes from the `<arch>.*` keys (Qwen3.5: ssm.*, attention.recurrent_layers, rope.dimension_*), each
// tensor is dequantized to f32 from whatever ggml type it has (or, on request, matrices keep their file type for
// the ggml-faithful inference path). Qwen3.5's converter transforms are undone: norms - 1, ssm_a -> A_log, the
// value-head reorder (names.h: gguf_row_order, gguf_column_order).
#pragma once

#include <string>

#include "model/model.h"

namespace tune {

// True when `path` ends in ".gguf" (case-insensitive).
bool is_gguf_path(const std::string& path);

// Internal tensor `name` (values `t`, f32) as llama.cpp's converter stores it: Qwen3.5's zero-centred RMSNorm
// weights + 1 (not the DeltaNet's gated norm), A_log -> -exp(A_log), the value-head reorder of rows and columns
// (names.h); `t` itself for everything else. The shape stays. model_load_gguf applies the inverse.
Tensor gguf_tensor_values(const ModelConfig& c, const std::string& name, const Tensor& t);

// The ModelConfig a GGUF file describes (no tensor data is read beyond the header).
ModelConfig model_config_from_gguf(const std::string& path);

// Loads the model; FormatError naming the file and tensor for missing tensors or wrong shapes, UnsupportedError
// for other architectures or ggml types tune cannot dequantize. By default every tensor is dequantized to f32.
// With `keep_quantized`, matrices (2-D and 3-D expert tensors) stored in a type linear_fwd computes directly
// (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, F16, BF16) keep the file's type, so model_logits multiplies them
// the way llama.cpp's CPU backend does (activations quantized per row, integer block dot products); norms,
// biases and the embedding table used for the row lookup are f32, and a tied output head uses the file's
// token_embd type as llama.cpp does (Qwen3.5's ssm_out with reordered value heads is dequantized: its blocks span
// the reordered columns). Such a model runs forward only (model_logits); training refuses it.
Model model_load_gguf(const std::string& path, bool keep_quantized = false);

}  // namespace tune
