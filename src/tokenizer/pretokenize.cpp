// Hand-written matcher for the Qwen pre-tokenizer regexes (see pretokenize.h). Each branch below is one
// alternative of the regex, tried in order, with the result that Oniguruma's backtracking gives.
#include "tokenizer/pretokenize.h"

#include <string>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace tune {
namespace {

constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen35Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Char {
  uint32_t cp;
  uint32_t len;
  uint8_t flags;
};

class Matcher {
 public:
  Matcher(PreTokenizerKind kind, std::string_view text)
      : p_(reinterpret_cast<const unsigned char*>(text.data())),
        n_(text.size()),
        body_(kind == PreTokenizerKind::kQwen35 ? kCharLetter | kCharMark : kCharLetter),
        not_punct_(kind == PreTokenizerKind::kQwen35 ? kCharSpace | kCharLetter | kCharNumber | kCharMark
                                                     : kCharSpace | kCharLetter | kCharNumber) {}

  size_t piece_end(size_t pos) const {
    const Char c = at(pos);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d). Case folding also maps U+017F (long s) to s.
    if (c.cp == '\'' && pos + 1 < n_) {
      const Char d = at(pos + 1);
      const uint32_t l = d.cp < 0x80 ? (d.cp | 0x20) : d.cp;
      if (l == 's' || l == 't' || l == 'm' || l == 'd' || d.cp == 0x17F) return pos + 1 + d.len;
      if ((l == 'r' || l == 'v') && pos + 2 < n_ && (p_[pos + 2] | 0x20) == 'e') return pos + 3;
      if (l == 'l' && pos + 2 < n_ && (p_[pos + 2] | 0x20) == 'l') return pos + 3;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+ (Qwen3.5: [\p{L}\p{M}]+). A mark that starts the run may as well be read as
    // the optional prefix: the span is the same.
    if (c.flags & body_) return run_end(pos + c.len, body_);
    if (!is_newline(c.cp) && !(c.flags & (kCharLetter | kCharNumber)) && pos + c.len < n_ &&
        (at(pos + c.len).flags & body_)) {
      return run_end(pos + c.len, body_);
    }
    // \p{N}: one digit at a time.
    if (c.flags & kCharNumber) return pos + c.len;
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    size_t q = pos;
    if (c.cp == ' ' && pos + 1 < n_ && is_punct(at(pos + 1))) q = pos + 1;
    if (q != pos || is_punct(c)) {
      q = punct_run_end(q);
      while (q < n_ && (p_[q] == '\r' || p_[q] == '\n')) ++q;
      return q;
    }
    // Only whitespace is left. `\s*[\r\n]+` ends after the last newline of the run; else `\s+(?!\S)` leaves
    // the run's last character to the word after it; else `\s+` takes a single space before a word.
    size_t end = pos, last_start = pos, after_newline = 0;
    while (end < n_) {
      const Char w = at(end);
      if (!(w.flags & kCharSpace)) break;
      if (is_newline(w.cp)) after_newline = end + 1;
      last_start = end;
      end += w.len;
    }
    if (after_newline != 0) return after_newline;
    if (end == n_ || last_start == pos) return end;
    return last_start;
  }

 private:
  Char at(size_t i) const {
    if (p_[i] < 0x80) return {p_[i], 1, unicode_flags(p_[i])};
    const Utf8Char u = utf8_decode(p_ + i, n_ - i);
    return {u.cp, u.len, u.cp == kInvalidCodepoint ? uint8_t{0} : unicode_flags(u.cp)};
  }
  static bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }
  bool is_punct(const Char& c) const { return !(c.flags & not_punct_); }

  size_t run_end(size_t i, uint8_t mask) const {
    while (i < n_) {
      const Char c = at(i);
      if (!(c.flags & mask)) break;
      i += c.len;
    }
    return i;
  }
  size_t punct_run_end(size_t i) const {
    while (i < n_) {
      const Char c = at(i);
      if (!is_punct(c)) break;
      i += c.len;
    }
    return i;
  }

  const unsigned char* p_;
  size_t n_;
  uint8_t body_;
  uint8_t not_punct_;
};

}  // namespace

std::string_view pre_tokenizer_regex(PreTokenizerKind kind) {
  return kind == PreTokenizerKind::kQwen35 ? kQwen35Regex : kQwen2Regex;
}

std::string_view pre_tokenizer_gguf_name(PreTokenizerKind kind) {
  return kind == PreTokenizerKind::kQwen35 ? "qwen35" : "qwen2";
}

std::optional<PreTokenizerKind> pre_tokenizer_kind_from_regex(std::string_view regex) {
  if (regex == kQwen2Regex) return PreTokenizerKind::kQwen2;
  if (regex == kQwen35Regex) return PreTokenizerKind::kQwen35;
  return std::nullopt;
}

PreTokenizerKind pre_tokenizer_kind_from_gguf(std::string_view pre) {
  if (pre == "qwen2") return PreTokenizerKind::kQwen2;
  if (pre == "qwen35") return PreTokenizerKind::kQwen35;
  throw UnsupportedError("GGUF tokenizer.ggml.pre \"" + std::string(pre) + "\" is not supported",
                         "tune implements the Qwen pre-tokenizers \"qwen2\" and \"qwen35\"");
}

size_t pre_tokenize_piece_end(PreTokenizerKind kind, std::string_view text, size_t pos) {
  return Matcher(kind, text).piece_end(pos);
}

std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string_view> pieces;
  const Matcher m(kind, text);
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = m.piece_end(pos);
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

}  // namespace tune
