// The encode/decode pipeline: added-token split → NFC → pre-tokenizer → BPE over raw bytes (the ByteLevel
// alphabet is undone once at load, so encoding never maps bytes to characters), and tokenizer_config.json's
// eos/pad/bos names. Depends on tokenizer_json.h, bpe.h, pretokenize.h, unicode.h, nlohmann/json,
// core/error.h.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/unicode.h"

namespace tune {
namespace {

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100...
// in byte order.
struct ByteAlphabet {
  int16_t byte_of[324];  // by code point (all below U+0144), -1 outside the alphabet
  ByteAlphabet() {
    std::fill(std::begin(byte_of), std::end(byte_of), int16_t{-1});
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_of[printable ? b : next++] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet kAlphabet;

// The raw bytes a byte-level token string stands for; false if it has characters outside the alphabet.
bool byte_level_to_bytes(std::string_view token, std::string& out) {
  out.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  for (size_t i = 0; i < token.size();) {
    const Utf8Char c = utf8_decode(p + i, token.size() - i);
    if (c.cp >= 324 || kAlphabet.byte_of[c.cp] < 0) return false;
    out.push_back(static_cast<char>(kAlphabet.byte_of[c.cp]));
    i += c.len;
  }
  return true;
}

// Token string -> id over strings stored elsewhere (the token_text table), open addressing.
class TokenIndex {
 public:
  explicit TokenIndex(const std::vector<std::string>& texts) : texts_(texts) {}
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, -1);
  }
  // Points `text` at `id` (replacing an earlier id with the same text); texts_[id] must equal `text`.
  void assign(std::string_view text, int32_t id) {
    if (2 * (count_ + 1) > slots_.size()) grow();
    int32_t& slot = slots_[slot_of(text)];
    if (slot < 0) ++count_;
    slot = id;
  }
  int32_t find(std::string_view text) const { return slots_.empty() ? -1 : slots_[slot_of(text)]; }

 private:
  // The slot holding `text`, or the empty slot where it would go.
  size_t slot_of(std::string_view text) const {
    const size_t mask = slots_.size() - 1;
    for (size_t i = word_hash(text) & mask;; i = (i + 1) & mask) {
      if (slots_[i] < 0 || texts_[slots_[i]] == text) return i;
    }
  }
  void grow() {
    std::vector<int32_t> old = std::move(slots_);
    reserve(std::max<size_t>(16, old.size()));
    count_ = 0;
    for (int32_t id : old) {
      if (id >= 0) assign(texts_[id], id);
    }
  }

  const std::vector<std::string>& texts_;
  std::vector<int32_t> slots_;
  size_t count_ = 0;
};

bool is_word_char(uint32_t cp) {
  // Approximates the \w of HF's single_word check (Alphabetic, M, Nd, Pc, Join_Control) by L, M, N and '_'.
  return cp == '_' ||
         (cp != kInvalidCodepoint && (unicode_flags(cp) & (kCharLetter | kCharMark | kCharNumber)));
}
bool is_space(uint32_t cp) {
  return cp != kInvalidCodepoint && (unicode_flags(cp) & kCharSpace);
}

// Start of the character that ends text[0, end).
size_t prev_char_start(std::string_view text, size_t end) {
  size_t i = end - 1;
  while (i > 0 && end - i < 4 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}
uint32_t char_at(std::string_view text, size_t i) {
  return utf8_decode(reinterpret_cast<const unsigned char*>(text.data()) + i, text.size() - i).cp;
}

// Finds added tokens in text the way HF's AddedVocabulary does: leftmost-longest, non-overlapping.
class AddedMatcher {
 public:
  // `text` is what is searched for: the token's content, normalized for tokens matched after normalization.
  void add(std::string text, const AddedTokenSpec* token) {
    if (text.empty()) return;
    auto& list = by_first_[static_cast<unsigned char>(text[0])];
    list.push_back(Pattern{std::move(text), token});
    std::stable_sort(list.begin(), list.end(),
                     [](const Pattern& x, const Pattern& y) { return x.text.size() > y.text.size(); });
    empty_ = false;
  }
  bool empty() const { return empty_; }

  // Calls on_text(piece) for the text between matches and on_token(id) for each match, in order.
  template <class OnText, class OnToken>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    size_t done = 0;  // text[0, done) has been handed out
    size_t i = 0;
    while (i < text.size()) {
      const Pattern* match = nullptr;
      for (const Pattern& p : by_first_[static_cast<unsigned char>(text[i])]) {
        if (text.substr(i, p.text.size()) == p.text) {
          match = &p;
          break;
        }
      }
      if (!match) {
        ++i;
        continue;
      }
      const AddedTokenSpec* hit = match->token;
      size_t start = i, stop = i + match->text.size();
      i = stop;
      if (hit->single_word) {
        const bool word_before = start > 0 && is_word_char(char_at(text, prev_char_start(text, start)));
        const bool word_after = stop < text.size() && is_word_char(char_at(text, stop));
        if (word_before || word_after) continue;
      }
      if (hit->lstrip) {
        size_t s = start;
        while (s > done && is_space(char_at(text, prev_char_start(text, s)))) s = prev_char_start(text, s);
        start = s;
      }
      if (hit->rstrip) {
        while (stop < text.size() && is_space(char_at(text, stop))) {
          stop +=
              utf8_decode(reinterpret_cast<const unsigned char*>(text.data()) + stop, text.size() - stop).len;
        }
        i = stop;
      }
      if (done < start) on_text(text.substr(done, start - done));
      on_token(hit->id);
      done = stop;
    }
    if (done < text.size()) on_text(text.substr(done));
  }

 private:
  struct Pattern {
    std::string text;
    const AddedTokenSpec* token;
  };
  std::vector<Pattern> by_first_[256];  // by first byte, longest first
  bool empty_ = true;
};

}  // namespace

struct TokenizerImpl {
  static constexpr uint8_t kPresent = 1, kSpecial = 2;
  std::vector<std::string> token_text;    // by id
  std::vector<std::string> decode_bytes;  // by id: what the ByteLevel decoder makes of the token
  std::vector<uint8_t> flags;             // by id: kPresent | kSpecial
  TokenIndex id_of{token_text};
  std::vector<std::string> merges;
  std::vector<AddedTokenSpec> added;
  AddedMatcher raw_matcher;         // added tokens matched before normalization (normalized: false)
  AddedMatcher normalized_matcher;  // ... and after it (normalized: true)
  std::unique_ptr<BpeModel> bpe;
  PreTokenizerKind pre = PreTokenizerKind::kQwen2;
  bool nfc = true;
  int32_t eos = -1, pad = -1, bos = -1;

  TokenizerImpl(TokenizerSpec spec, const std::string& source);
  TokenizerImpl(const TokenizerImpl&) = delete;  // id_of refers to token_text

  void encode_plain(std::string_view text, BpeModel::Session& session, std::vector<int32_t>& out) const {
    std::string normalized;
    if (nfc && unicode_nfc(text, normalized)) text = normalized;
    if (normalized_matcher.empty()) {
      encode_pretokenized(text, session, out);
    } else {
      normalized_matcher.split(
          text, [&](std::string_view piece) { encode_pretokenized(piece, session, out); },
          [&](int32_t id) { out.push_back(id); });
    }
  }
  void encode_pretokenized(std::string_view text, BpeModel::Session& session,
                           std::vector<int32_t>& out) const {
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = pre_tokenize_piece_end(pre, text, pos);
      session.encode_word(text.substr(pos, end - pos), out);
      pos = end;
    }
  }
};

TokenizerImpl::TokenizerImpl(TokenizerSpec spec, const std::string& source)
    : added(std::move(spec.added)), pre(spec.pre), nfc(spec.nfc) {
  int64_t size = 0;
  for (const auto& [text, id] : spec.vocab) size = std::max<int64_t>(size, id + 1);
  for (const AddedTokenSpec& a : added) size = std::max<int64_t>(size, a.id + 1);
  token_text.resize(size);
  decode_bytes.resize(size);
  flags.assign(size, 0);
  id_of.reserve(spec.vocab.size() + added.size());

  int32_t byte_ids[256];
  std::fill(std::begin(byte_ids), std::end(byte_ids), -1);
  std::vector<std::pair<std::string, int32_t>> whole_words;
  std::string bytes;
  for (auto& [text, id] : spec.vocab) {
    if (flags[id]) throw FormatError(source + ": model.vocab has two tokens with id " + std::to_string(id));
    flags[id] = kPresent;
    // The ByteLevel decoder maps a token back to bytes if all its characters are in the alphabet, and passes
    // it through as UTF-8 otherwise.
    if (byte_level_to_bytes(text, bytes)) {
      if (bytes.size() == 1) byte_ids[static_cast<unsigned char>(bytes[0])] = id;
      if (spec.ignore_merges) whole_words.emplace_back(bytes, id);
      decode_bytes[id] = bytes;
    } else {
      decode_bytes[id] = text;
    }
    token_text[id] = std::move(text);
    id_of.assign(token_text[id], id);
  }

  MergeTable table;
  table.reserve(spec.merges.size());
  merges.reserve(spec.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    merges.push_back(a + " " + b);
    joined.assign(a).append(b);
    int32_t ids[3];
    const std::string_view parts[3] = {a, b, joined};
    for (int k = 0; k < 3; ++k) {
      ids[k] = id_of.find(parts[k]);
      if (ids[k] < 0) {
        throw FormatError(source + ": merge #" + std::to_string(rank) + " (\"" + merges.back() +
                              "\") needs token \"" + std::string(parts[k]) + "\", which model.vocab lacks",
                          "is the file complete and are vocab and merges from the same tokenizer?");
      }
    }
    table.insert(ids[0], ids[1], static_cast<uint32_t>(rank), ids[2]);
  }
  bpe = std::make_unique<BpeModel>(byte_ids, std::move(table), spec.ignore_merges, std::move(whole_words));

  // Added tokens come after the vocab: one spelled like a vocab token takes over that spelling, as in HF.
  for (const AddedTokenSpec& a : added) {
    token_text[a.id] = a.content;
    decode_bytes[a.id] = byte_level_to_bytes(a.content, bytes) ? bytes : a.content;
    flags[a.id] = kPresent | (a.special ? kSpecial : 0);
    id_of.assign(token_text[a.id], a.id);
    if (a.normalized) {
      normalized_matcher.add(nfc ? unicode_nfc(a.content) : a.content, &a);
    } else {
      raw_matcher.add(a.content, &a);
    }
  }
}

namespace {

// tokenizer_config.json names eos/pad/bos as a string, as {"content": ...}, or null.
int32_t config_token_id(const nlohmann::json& config, const char* key, const TokenizerImpl& impl,
                        const std::string& path) {
  if (!config.contains(key) || config.at(key).is_null()) return -1;
  const nlohmann::json* v = &config.at(key);
  if (v->is_object() && v->contains("content")) v = &v->at("content");
  if (!v->is_string()) throw FormatError(path + ": " + key + " must be a string or {\"content\": string}");
  const std::string name = v->get<std::string>();
  const int32_t id = impl.id_of.find(name);
  if (id < 0) {
    throw FormatError(path + ": " + key + " \"" + name + "\" is not a token of tokenizer.json",
                      "do tokenizer.json and tokenizer_config.json come from the same model?");
  }
  return id;
}

std::shared_ptr<TokenizerImpl> load(const std::string& path, const TokenizerOptions& options) {
  TokenizerSpec spec = read_tokenizer_json(path, options.pre_tokenizer);
  if (options.nfc) spec.nfc = *options.nfc;
  return std::make_shared<TokenizerImpl>(std::move(spec), path);
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json_path, const TokenizerOptions& options) {
  return Tokenizer(load(tokenizer_json_path, options));
}

Tokenizer Tokenizer::from_spec(TokenizerSpec spec, const std::string& source, int32_t eos, int32_t pad, int32_t bos) {
  auto impl = std::make_shared<TokenizerImpl>(std::move(spec), source);
  const int32_t n = int32_t(impl->token_text.size());
  for (int32_t id : {eos, pad, bos})
    if (id >= n) throw FormatError(source + ": special token id " + std::to_string(id) + " is outside the vocabulary");
  impl->eos = eos;
  impl->pad = pad;
  impl->bos = bos;
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_dir(const std::string& model_dir, const TokenizerOptions& options) {
  const std::string dir = model_dir.empty() || model_dir.back() == '/' ? model_dir : model_dir + "/";
  std::shared_ptr<TokenizerImpl> impl = load(dir + "tokenizer.json", options);
  const std::string config_path = dir + "tokenizer_config.json";
  std::ifstream file(config_path, std::ios::binary);
  if (file) {
    std::ostringstream ss;
    ss << file.rdbuf();
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(std::move(ss).str());
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(config_path + ": not valid JSON: " + e.what());
    }
    if (!config.is_object()) throw FormatError(config_path + ": expected a JSON object");
    impl->eos = config_token_id(config, "eos_token", *impl, config_path);
    impl->pad = config_token_id(config, "pad_token", *impl, config_path);
    impl->bos = config_token_id(config, "bos_token", *impl, config_path);
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  BpeModel::Session session(*impl_->bpe);
  if (impl_->raw_matcher.empty()) {
    impl_->encode_plain(text, session, out);
  } else {
    impl_->raw_matcher.split(
        text, [&](std::string_view piece) { impl_->encode_plain(piece, session, out); },
        [&](int32_t id) { out.push_back(id); });
  }
  session.finish();
  return out;
}

std::vector<int32_t> Tokenizer::encode_ordinary(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  BpeModel::Session session(*impl_->bpe);
  std::string normalized;
  if (impl_->nfc && unicode_nfc(text, normalized)) text = normalized;
  impl_->encode_pretokenized(text, session, out);
  session.finish();
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(impl_->flags.size()) || !impl_->flags[id]) continue;
    if (skip_special && (impl_->flags[id] & TokenizerImpl::kSpecial)) continue;
    bytes += impl_->decode_bytes[id];
  }
  return utf8_lossy(bytes);
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(impl_->token_text.size())) return {};
  return impl_->token_text[id];
}

int32_t Tokenizer::token_id(std::string_view token) const {
  return impl_->id_of.find(token);
}

int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->token_text.size());
}
int32_t Tokenizer::eos_id() const {
  return impl_->eos;
}
int32_t Tokenizer::pad_id() const {
  return impl_->pad;
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < static_cast<int64_t>(impl_->flags.size()) &&
         (impl_->flags[id] & TokenizerImpl::kSpecial);
}

const std::vector<std::string>& Tokenizer::merges() const {
  return impl_->merges;
}
PreTokenizerKind Tokenizer::pre_tokenizer() const {
  return impl_->pre;
}
bool Tokenizer::nfc() const {
  return impl_->nfc;
}

}  // namespace tune
