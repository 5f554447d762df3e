// Loading a qwen2 / qwen3 / qwen3moe GGUF (tune's or llama.cpp's) into a Model with f32 weights: the
// ModelConfig comes from the `<arch>.*` keys, each tensor is dequantized from whatever ggml type it has.
#pragma once

#include <string>

#include "model/model.h"

namespace tune {

// True when `path` ends in ".gguf" (case-insensitive).
bool is_gguf_path(const std::string& path);

// The ModelConfig a GGUF file describes (no tensor data is read beyond the header).
ModelConfig model_config_from_gguf(const std::string& path);

// Loads the model; FormatError naming the file and tensor for missing tensors or wrong shapes, UnsupportedError
// for other architectures or ggml types tune cannot dequantize.
Model model_load_gguf(const std::string& path);

}  // namespace tune
