// The tokenizer of a GGUF file (tokenizer.ggml.model "gpt2": tokens, token_type, merges, pre, special ids)
// as a tune Tokenizer: NORMAL/BYTE tokens form the BPE vocabulary, CONTROL tokens become special added tokens,
// USER_DEFINED ones non-special added tokens (UNUSED ones are dropped). The NFC normalizer is applied as the
// Hugging Face Qwen tokenizers do.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace tune {

class GgufFile;

// FormatError / UnsupportedError naming the file for a missing or non-gpt2 vocabulary or an unknown pre type.
Tokenizer tokenizer_from_gguf(const GgufFile& file);
Tokenizer tokenizer_from_gguf(const std::string& path);

}  // namespace tune
