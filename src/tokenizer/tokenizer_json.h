// Reading a Hugging Face tokenizer.json into the plain description the Tokenizer is built from (a GGUF
// vocabulary can fill the same struct). Validates that the pipeline is one tune implements (NFC or no
// normalizer, the Qwen Split regex + ByteLevel, BPE). Depends on nlohmann/json (in the .cpp only) and
// core/error.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/pretokenize.h"

namespace tune {

struct AddedTokenSpec {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;       // byte-level token string, id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedTokenSpec> added;
  bool ignore_merges = false;
  bool nfc = false;
  PreTokenizerKind pre = PreTokenizerKind::kQwen2;
};

// Throws IoError (cannot read), FormatError (bad JSON or structure) or UnsupportedError (a pipeline tune does
// not implement), each naming the file. With `pre_override`, the Split regex of the file is not checked.
TokenizerSpec read_tokenizer_json(const std::string& path,
                                  std::optional<PreTokenizerKind> pre_override = std::nullopt);

}  // namespace tune
