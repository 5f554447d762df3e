// tokenizer.json reader. model.vocab and model.merges (150k+ entries each) are streamed by a SAX handler
// straight into vectors; only the small rest of the file becomes a json value. That is several times faster
// than building a DOM of the whole 11 MB file.
#include "tokenizer/tokenizer_json.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace tune {
namespace {

using json = nlohmann::json;

// Ids above this are taken as a corrupt file rather than allocated for.
constexpr int64_t kMaxTokenId = 1 << 24;
constexpr const char* kHint = "is this a Hugging Face tokenizer.json?";

class Reader : public nlohmann::json_sax<json> {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  json root;
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false, has_merges = false;

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return mode_ == kVocab ? vocab_id(v) : value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override {
    return mode_ == kVocab ? vocab_id(v > static_cast<uint64_t>(kMaxTokenId) ? -1 : static_cast<int64_t>(v))
                           : value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool binary(binary_t&) override { return value(json()); }
  bool string(string_t& s) override {
    if (mode_ == kMerges) {
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        fail("merge #" + std::to_string(merges.size()) + " \"" + s + "\" is not \"a b\"");
      }
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == kMergePair) {
      pair_.push_back(std::move(s));
      return true;
    }
    return value(json(std::move(s)));
  }
  bool start_object(std::size_t) override {
    if (mode_ == kDom && at_model_key("vocab")) {
      mode_ = kVocab;
      has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    if (mode_ == kVocab) {
      vocab_key_ = std::move(k);
    } else {
      keys_.back() = std::move(k);
    }
    return true;
  }
  bool end_object() override {
    if (mode_ == kVocab) {
      mode_ = kDom;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) override {
    if (mode_ == kMerges) {
      mode_ = kMergePair;
      pair_.clear();
      return true;
    }
    if (mode_ == kDom && at_model_key("merges")) {
      mode_ = kMerges;
      has_merges = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == kMergePair) {
      if (pair_.size() != 2) bad_merge();
      merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = kMerges;
      return true;
    }
    if (mode_ == kMerges) {
      mode_ = kDom;
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    throw FormatError(path_ + ": not valid JSON: " + e.what(),
                      "is the file complete (not a Git LFS pointer)?");
  }

 private:
  enum Mode { kDom, kVocab, kMerges, kMergePair };

  // Inside model.vocab and model.merges only ids, strings and pairs of strings may appear.
  bool value(json&& v) {
    if (mode_ == kVocab) fail("model.vocab[\"" + vocab_key_ + "\"] must be a token id");
    if (mode_ != kDom) bad_merge();
    if (stack_.empty()) {
      root = std::move(v);
    } else if (stack_.back()->is_object()) {
      (*stack_.back())[keys_.back()] = std::move(v);
    } else {
      stack_.back()->push_back(std::move(v));
    }
    return true;
  }
  bool open(json&& container) {
    value(std::move(container));
    json* slot = stack_.empty()               ? &root
                 : stack_.back()->is_object() ? &(*stack_.back())[keys_.back()]
                                              : &stack_.back()->back();
    stack_.push_back(slot);
    keys_.emplace_back();
    return true;
  }
  bool close() {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool at_model_key(const char* key) const {
    return stack_.size() == 2 && keys_[0] == "model" && stack_[1]->is_object() && keys_[1] == key;
  }
  bool vocab_id(int64_t id) {
    if (id < 0 || id > kMaxTokenId) {
      fail("model.vocab[\"" + vocab_key_ + "\"] must be a token id in [0, " + std::to_string(kMaxTokenId) +
           "]");
    }
    vocab.emplace_back(std::move(vocab_key_), static_cast<int32_t>(id));
    return true;
  }
  [[noreturn]] void bad_merge() {
    fail("merge #" + std::to_string(merges.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
  }
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(path_ + ": " + what, kHint); }

  const std::string& path_;
  Mode mode_ = kDom;
  std::vector<json*> stack_;       // open containers of the DOM part
  std::vector<std::string> keys_;  // the current key of each open object
  std::string vocab_key_;
  std::vector<std::string> pair_;
};

// Checked access to the DOM part; every failure names the file and the field.
class Fields {
 public:
  explicit Fields(const std::string& path) : path_(path) {}
  const json& get(const json& obj, const char* key, const std::string& where) const {
    if (!obj.is_object() || !obj.contains(key)) fail(where + "." + key + " missing");
    return obj.at(key);
  }
  const json* find(const json& obj, const char* key) const {
    return obj.is_object() && obj.contains(key) && !obj.at(key).is_null() ? &obj.at(key) : nullptr;
  }
  std::string string(const json& obj, const char* key, const std::string& where) const {
    const json& v = get(obj, key, where);
    if (!v.is_string()) fail(where + "." + key + " must be a string");
    return v.get<std::string>();
  }
  std::string string_or(const json& obj, const char* key, const std::string& fallback) const {
    const json* v = find(obj, key);
    return v && v->is_string() ? v->get<std::string>() : fallback;
  }
  bool flag(const json& obj, const char* key, bool fallback, const std::string& where) const {
    const json* v = find(obj, key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(where + "." + key + " must be true or false");
    return v->get<bool>();
  }
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(path_ + ": " + what, kHint); }
  [[noreturn]] void unsupported(const std::string& what, const json& v) const {
    throw UnsupportedError(path_ + ": " + what + " " + v.dump().substr(0, 300) + " is not supported",
                           "tune implements the byte-level BPE tokenizers of Qwen2/2.5/3/3.5");
  }

 private:
  const std::string& path_;
};

bool nfc_normalizer(const json& normalizer, const Fields& f) {
  if (normalizer.is_null()) return false;
  const std::string type = f.string_or(normalizer, "type", "");
  if (type == "NFC") return true;
  const json* steps = f.find(normalizer, "normalizers");
  if (type == "Sequence" && steps && steps->is_array() && steps->size() == 1 &&
      f.string_or((*steps)[0], "type", "") == "NFC") {
    return true;
  }
  f.unsupported("normalizer", normalizer);
}

// Sequence[Split(Regex, Isolated), ByteLevel(add_prefix_space: false, use_regex: false)], the regex one of
// ours.
PreTokenizerKind qwen_pre_tokenizer(const json& pre, const Fields& f,
                                    std::optional<PreTokenizerKind> pre_override) {
  const json* steps = f.find(pre, "pretokenizers");
  const bool shape = f.string_or(pre, "type", "") == "Sequence" && steps && steps->is_array() &&
                     steps->size() == 2 && f.string_or((*steps)[0], "type", "") == "Split" &&
                     f.string_or((*steps)[0], "behavior", "") == "Isolated" &&
                     !(*steps)[0].value("invert", false) &&
                     f.string_or((*steps)[1], "type", "") == "ByteLevel" &&
                     !(*steps)[1].value("use_regex", true) && !(*steps)[1].value("add_prefix_space", true);
  if (!shape) f.unsupported("pre_tokenizer", pre);
  if (pre_override) return *pre_override;
  const json* pattern = f.find((*steps)[0], "pattern");
  const std::string regex = pattern ? f.string_or(*pattern, "Regex", "") : "";
  const std::optional<PreTokenizerKind> kind = pre_tokenizer_kind_from_regex(regex);
  if (!kind) f.unsupported("pre_tokenizer regex", pattern ? *pattern : pre);
  return *kind;
}

TokenizerSpec build_spec(const std::string& path, Reader& r, std::optional<PreTokenizerKind> pre_override) {
  const Fields f(path);
  if (!r.root.is_object()) f.fail("expected a JSON object");
  TokenizerSpec spec;
  spec.nfc = nfc_normalizer(r.root.contains("normalizer") ? r.root.at("normalizer") : json(), f);
  spec.pre = qwen_pre_tokenizer(f.get(r.root, "pre_tokenizer", "(root)"), f, pre_override);
  if (const json* decoder = f.find(r.root, "decoder");
      decoder && f.string_or(*decoder, "type", "") != "ByteLevel") {
    f.unsupported("decoder", *decoder);
  }

  const json& model = f.get(r.root, "model", "(root)");
  if (const json* type = f.find(model, "type"); type && *type != "BPE") f.unsupported("model.type", *type);
  if (f.flag(model, "byte_fallback", false, "model"))
    f.unsupported("model.byte_fallback", model.at("byte_fallback"));
  if (const json* dropout = f.find(model, "dropout")) f.unsupported("model.dropout", *dropout);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = f.find(model, key); v && *v != "") f.unsupported(std::string("model.") + key, *v);
  }
  spec.ignore_merges = f.flag(model, "ignore_merges", false, "model");
  // The reader takes vocab and merges out of the DOM; if they are still there, they had the wrong JSON type.
  if (!r.has_vocab) f.fail(model.contains("vocab") ? "model.vocab must be an object" : "model.vocab missing");
  if (!r.has_merges)
    f.fail(model.contains("merges") ? "model.merges must be an array" : "model.merges missing");
  spec.vocab = std::move(r.vocab);
  spec.merges = std::move(r.merges);

  if (const json* added = f.find(r.root, "added_tokens")) {
    if (!added->is_array()) f.fail("added_tokens must be an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const json& t = (*added)[i];
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      AddedTokenSpec a;
      a.content = f.string(t, "content", where);
      const json& id = f.get(t, "id", where);
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId) {
        f.fail(where + ".id must be a token id in [0, " + std::to_string(kMaxTokenId) + "]");
      }
      a.id = static_cast<int32_t>(id.get<int64_t>());
      a.single_word = f.flag(t, "single_word", false, where);
      a.lstrip = f.flag(t, "lstrip", false, where);
      a.rstrip = f.flag(t, "rstrip", false, where);
      a.normalized = f.flag(t, "normalized", true, where);
      a.special = f.flag(t, "special", false, where);
      spec.added.push_back(std::move(a));
    }
  }
  return spec;
}

}  // namespace

TokenizerSpec read_tokenizer_json(const std::string& path, std::optional<PreTokenizerKind> pre_override) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw IoError(path + ": cannot open", "a Hugging Face model directory has tokenizer.json");
  std::ostringstream ss;
  ss << file.rdbuf();
  if (file.bad()) throw IoError(path + ": read failed");
  const std::string text = std::move(ss).str();
  Reader reader(path);
  json::sax_parse(text, &reader);
  try {
    return build_spec(path, reader, pre_override);
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type where the checks above do not look.
    throw FormatError(path + ": unexpected structure: " + e.what(), kHint);
  }
}

}  // namespace tune
