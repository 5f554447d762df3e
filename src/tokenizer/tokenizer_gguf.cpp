// GGUF tokenizer metadata (tokenizer.ggml.*) -> TokenizerSpec -> Tokenizer, the same construction and checks
// tokenizer.json goes through.
#include "tokenizer/tokenizer_gguf.h"

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_json.h"

namespace tune {

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

  // Qwen's GGUF vocabularies: NORMAL (1), UNKNOWN (2) and BYTE (6) are BPE tokens; CONTROL (3) and
  // USER_DEFINED (4) are added tokens matched before the BPE, CONTROL ones special. The NFC normalizer of the
  // Qwen tokenizer.json is kept, so tune tokenizes a GGUF like the model's own tokenizer.
  TokenizerSpec spec;
  spec.pre = kind;
  spec.nfc = true;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t ty = types[i];
    if (ty == 3 || ty == 4) {
      AddedTokenSpec a;
      a.content = tokens[i];
      a.id = int32_t(i);
      a.normalized = false;
      a.special = ty == 3;
      spec.added.push_back(a);
    } else if (ty == 1 || ty == 2 || ty == 6) {
      spec.vocab.emplace_back(tokens[i], int32_t(i));
    }
  }
  if (const GgufValue* m = f.find("tokenizer.ggml.merges")) {
    for (const std::string& merge : m->as_strings()) {
      const size_t sp = merge.find(' ');
      if (sp == std::string::npos)
        throw FormatError(f.path() + ": tokenizer.ggml.merges entry '" + merge + "' is not 'a b'");
      spec.merges.emplace_back(merge.substr(0, sp), merge.substr(sp + 1));
    }
  }
  const auto special = [&](const char* key) -> int32_t {
    if (!f.find(key)) return -1;
    const int64_t id = f.get_int(key);
    return id >= 0 && size_t(id) < tokens.size() ? int32_t(id) : -1;
  };
  try {
    return Tokenizer::from_spec(std::move(spec), f.path(), special("tokenizer.ggml.eos_token_id"),
                                special("tokenizer.ggml.padding_token_id"), special("tokenizer.ggml.bos_token_id"));
  } catch (const Error& e) {
    throw FormatError(f.path() + ": the GGUF vocabulary does not form a tokenizer: " + e.what());
  }
}

Tokenizer tokenizer_from_gguf(const std::string& path) { return tokenizer_from_gguf(GgufFile(path)); }

}  // namespace tune
