// The byte-level BPE tokenizer of the Qwen models, loaded from a Hugging Face tokenizer.json: added/special
// tokens, NFC normalizer, the Qwen2/Qwen3.5 Split pre-tokenizer, ByteLevel, BPE. Encodes exactly as the HF
// `tokenizers` library does. Depends on core/error.h; nlohmann/json only inside the .cpp files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenize.h"

namespace tune {

// Overrides of what tokenizer.json says, for vocabularies that come from elsewhere (a GGUF names its
// pre-tokenizer in tokenizer.ggml.pre and carries no normalizer).
struct TokenizerOptions {
  std::optional<PreTokenizerKind> pre_tokenizer = std::nullopt;
  std::optional<bool> nfc = std::nullopt;
};

struct TokenizerImpl;
struct TokenizerSpec;  // tokenizer/tokenizer_json.h

// Immutable after loading; copies share the data. Every const method may be called from several threads.
class Tokenizer {
 public:
  // Loads <model_dir>/tokenizer.json, and eos/pad/bos names from <model_dir>/tokenizer_config.json if
  // present.
  static Tokenizer from_dir(const std::string& model_dir, const TokenizerOptions& options = {});
  // Loads a tokenizer.json alone (eos/pad/bos are then -1).
  static Tokenizer from_file(const std::string& tokenizer_json_path, const TokenizerOptions& options = {});
  // Builds from a vocabulary read elsewhere (e.g. GGUF metadata); `source` names it in errors; ids -1 for none.
  static Tokenizer from_spec(TokenizerSpec spec, const std::string& source, int32_t eos = -1, int32_t pad = -1,
                             int32_t bos = -1);

  // Added tokens in `text` (special or not) become their ids, as the HF tokenizer does (leftmost-longest
  // match, honouring their lstrip/rstrip/single_word/normalized flags); the rest is encoded as plain text.
  std::vector<int32_t> encode(std::string_view text) const;
  // Plain text: added-token strings in it are encoded like any other text.
  std::vector<int32_t> encode_ordinary(std::string_view text) const;
  // Ids without a token (e.g. the padding rows of a model's embedding) are skipped, as HF does; bytes that do
  // not form valid UTF-8 become U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The raw token string (byte-level alphabet, e.g. "Ġthe"; added tokens as written); "" for an id without
  // one.
  std::string token_text(int32_t id) const;
  int32_t token_id(std::string_view token) const;  // -1 if absent
  int64_t vocab_size() const;                      // largest id + 1
  int32_t eos_id() const;                          // -1 when none
  int32_t pad_id() const;
  int32_t bos_id() const;
  bool is_special(int32_t id) const;
  const std::vector<std::string>& merges() const;  // "a b", in rank order

  PreTokenizerKind pre_tokenizer() const;
  bool nfc() const;

 private:
  explicit Tokenizer(std::shared_ptr<const TokenizerImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const TokenizerImpl> impl_;
};

}  // namespace tune
