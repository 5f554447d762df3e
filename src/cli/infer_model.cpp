// Loading and options shared by tune generate and tune chat.
#include "cli/infer_model.h"

#include <cstdio>

#include "core/threads.h"
#include "io/gguf.h"
#include "model/lora_peft.h"
#include "model/model_gguf.h"
#include "tokenizer/tokenizer_gguf.h"

namespace tune::cli {

std::vector<std::string> infer_value_flags() {
  return {"--model",   "--adapter", "--max-tokens",     "--temperature",
          "--top-k",   "--top-p",   "--min-p",          "--seed",
          "--threads", "--ctx",     "--repeat-penalty", "--repetition-penalty",
          "--device",  "--system"};
}

std::vector<std::string> infer_bool_flags() {
  return {"--no-thinking"};
}

void infer_setup(const Args& a, const char* verb) {
  if (a.get("--device", "cpu") != "cpu")
    throw UnsupportedError(
        std::string("tune ") + verb + ": --device " + a.get("--device", "") + " is not available yet",
        "use --device cpu");
  const int64_t threads = a.get_int("--threads", 0);
  if (threads < 0 || threads > 1024)
    throw ConfigError("--threads " + std::to_string(threads) + " is out of range", "pass 1 to 1024");
  if (threads > 0) set_num_threads(int(threads));
}

namespace {

struct Loaded {
  Model model;
  Tokenizer tokenizer;
  std::optional<ChatTemplate> chat_template;
};

Loaded load(const std::string& path) {
  if (is_gguf_path(path)) {
    const GgufFile file(path);
    Loaded l{model_load_gguf(path, true), tokenizer_from_gguf(file), std::nullopt};
    if (file.find("tokenizer.chat_template")) {
      l.chat_template.emplace(file.get_string("tokenizer.chat_template"));
      auto text = [&](const char* key) {
        return file.find(key) ? l.tokenizer.token_text(int32_t(file.get_int(key))) : std::string();
      };
      l.chat_template->set_special_tokens(text("tokenizer.ggml.bos_token_id"),
                                          text("tokenizer.ggml.eos_token_id"));
    }
    return l;
  }
  Loaded l{model_load(path), Tokenizer::from_dir(path), std::nullopt};
  try {
    l.chat_template = ChatTemplate::from_model_dir(path);
  } catch (const FormatError&) {
    // No template: plain prompts still work; --chat and tune chat say so.
  }
  return l;
}

}  // namespace

InferModel infer_model_load(const Args& a) {
  Loaded l = load(a.require("--model"));
  InferModel m{std::move(l.model), std::move(l.tokenizer), std::move(l.chat_template), std::nullopt, {}};
  if (a.has("--adapter")) m.adapter = lora_load_peft(a.get("--adapter", ""), m.model);
  for (const char* s : {"<|im_end|>", "<|endoftext|>"})
    if (m.tokenizer.token_id(s) >= 0) m.stop_ids.push_back(m.tokenizer.token_id(s));
  if (m.tokenizer.eos_id() >= 0) m.stop_ids.push_back(m.tokenizer.eos_id());
  return m;
}

GenerateOptions infer_generate_options(const Args& a, const InferModel& m) {
  GenerateOptions g;
  g.max_tokens = a.get_int("--max-tokens", 128);
  if (g.max_tokens < 0) throw ConfigError("--max-tokens must be >= 0");
  g.sampler.temperature = a.get_double("--temperature", 0.0);
  g.sampler.top_k = a.get_int("--top-k", 0);
  g.sampler.top_p = a.get_double("--top-p", 1.0);
  g.sampler.min_p = a.get_double("--min-p", 0.0);
  // --repeat-penalty (llama.cpp's name) and --repetition-penalty (transformers') are the same option.
  g.sampler.repetition_penalty = a.get_double("--repeat-penalty", a.get_double("--repetition-penalty", 1.0));
  g.sampler.seed = uint64_t(a.get_int("--seed", 0));
  if (g.sampler.temperature < 0 || g.sampler.top_k < 0 || g.sampler.top_p <= 0 || g.sampler.top_p > 1 ||
      g.sampler.min_p < 0 || g.sampler.min_p > 1 || g.sampler.repetition_penalty <= 0)
    throw ConfigError(
        "sampling options out of range",
        "--temperature >= 0, --top-k >= 0, 0 < --top-p <= 1, 0 <= --min-p <= 1, --repeat-penalty > 0");
  g.stop_ids = m.stop_ids;
  return g;
}

EngineOptions infer_engine_options(const Args& a) {
  EngineOptions e;
  e.context = a.get_int("--ctx", 0);
  if (e.context < 0) throw ConfigError("--ctx must be > 0");
  return e;
}

std::string infer_render_chat(const InferModel& m, const nlohmann::json& messages, bool no_thinking) {
  if (!m.chat_template)
    throw ConfigError(
        "the model has no chat template",
        "use a model with tokenizer_config.json's chat_template or a GGUF with tokenizer.chat_template");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  if (no_thinking) opt.extra["enable_thinking"] = false;
  return m.chat_template->render(messages, nullptr, opt);
}

void TextStream::push(int32_t id) {
  ids_.push_back(id);
  const std::string all = tok_.decode(ids_);
  if (all.size() >= 3 && all.compare(all.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
  if (all.size() > printed_) std::fwrite(all.data() + printed_, 1, all.size() - printed_, stdout);
  std::fflush(stdout);
  printed_ = all.size();
}

}  // namespace tune::cli
