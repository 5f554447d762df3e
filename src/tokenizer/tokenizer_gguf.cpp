// GGUF vocabulary -> tokenizer.json + tokenizer_config.json in a private temporary directory -> Tokenizer::from_dir,
// so the one validated loading path builds the tokenizer.
#include "tokenizer/tokenizer_gguf.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/pretokenize.h"

namespace tune {

namespace fs = std::filesystem;

Tokenizer tokenizer_from_gguf(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    throw UnsupportedError(f.path() + ": tokenizer.ggml.model is '" + model + "'; tune reads byte-level BPE ('gpt2')");
  const std::string pre = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "qwen2";
  PreTokenizerKind kind;
  if (pre == pre_tokenizer_gguf_name(PreTokenizerKind::kQwen2) || pre == "deepseek-r1-qwen") {
    kind = PreTokenizerKind::kQwen2;
  } else if (pre == pre_tokenizer_gguf_name(PreTokenizerKind::kQwen35)) {
    kind = PreTokenizerKind::kQwen35;
  } else {
    throw UnsupportedError(f.path() + ": tokenizer.ggml.pre '" + pre + "' is not a Qwen pre-tokenizer");
  }
  const std::vector<std::string>& tokens = f.get("tokenizer.ggml.tokens").as_strings();
  std::vector<int64_t> types(tokens.size(), 1);
  if (const GgufValue* t = f.find("tokenizer.ggml.token_type")) types = t->as_ints();
  if (types.size() != tokens.size())
    throw FormatError(f.path() + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                      " entries, tokenizer.ggml.tokens " + std::to_string(tokens.size()));

  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t ty = types[i];
    if (ty == 3 || ty == 4) {
      added.push_back({{"id", int64_t(i)}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", ty == 3}});
    } else if (ty == 1 || ty == 6 || ty == 2) {
      vocab[tokens[i]] = int64_t(i);
    }
  }
  nlohmann::json merges = nlohmann::json::array();
  if (const GgufValue* m = f.find("tokenizer.ggml.merges")) merges = m->as_strings();
  nlohmann::json tj = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", std::string(pre_tokenizer_regex(kind))}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
      {"model",
       {{"type", "BPE"}, {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
  nlohmann::json cfg = nlohmann::json::object();
  const auto special = [&](const char* key, const char* name) {
    if (!f.find(key)) return;
    const int64_t id = f.get_int(key);
    if (id >= 0 && size_t(id) < tokens.size()) cfg[name] = tokens[size_t(id)];
  };
  special("tokenizer.ggml.eos_token_id", "eos_token");
  special("tokenizer.ggml.padding_token_id", "pad_token");
  special("tokenizer.ggml.bos_token_id", "bos_token");

  static std::atomic<int> counter{0};
  const fs::path dir = fs::temp_directory_path() /
                       ("tune_gguf_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{dir};
  std::ofstream(dir / "tokenizer.json") << tj.dump();
  std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  try {
    return Tokenizer::from_dir(dir.string());
  } catch (const Error& e) {
    throw FormatError(f.path() + ": the GGUF vocabulary does not form a tokenizer: " + e.what());
  }
}

Tokenizer tokenizer_from_gguf(const std::string& path) { return tokenizer_from_gguf(GgufFile(path)); }

}  // namespace tune
