// The Split pre-tokenizer of the Qwen tokenizers: their regex implemented by hand, with the semantics of the
// backtracking engine that Hugging Face `tokenizers` uses (Oniguruma), e.g. `\s+(?!\S)` leaving the last
// space of a run for the next word, and case-insensitive contractions. Depends on unicode.h.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace tune {

// Which Split regex a tokenizer uses. kQwen35 adds \p{M} to the letter runs (and removes it from
// punctuation).
enum class PreTokenizerKind { kQwen2, kQwen35 };

// The regex string as tokenizer.json writes it, and the name llama.cpp uses in GGUF `tokenizer.ggml.pre`.
std::string_view pre_tokenizer_regex(PreTokenizerKind kind);
std::string_view pre_tokenizer_gguf_name(PreTokenizerKind kind);
// nullopt for a regex this engine does not implement.
std::optional<PreTokenizerKind> pre_tokenizer_kind_from_regex(std::string_view regex);
// Throws UnsupportedError for a name other than "qwen2" / "qwen35".
PreTokenizerKind pre_tokenizer_kind_from_gguf(std::string_view pre);

// The end (byte offset) of the piece that starts at `pos` < text.size(). Pieces tile the text: the next one
// starts where this one ends. Ill-formed UTF-8 bytes count as punctuation (like U+FFFD).
size_t pre_tokenize_piece_end(PreTokenizerKind kind, std::string_view text, size_t pos);
// All pieces of `text`.
std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text);

}  // namespace tune
