// What `tune generate` and `tune chat` run: the model (a GGUF with its matrices kept in their file types, or
// a Hugging Face directory in f32), its tokenizer and chat template (a GGUF's own metadata, or the
// directory's files), an optional PEFT adapter, the end-of-turn ids, and the sampling / engine options both
// verbs share.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/args.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "model/lora.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tune::cli {

struct InferModel {
  Model model;
  Tokenizer tokenizer;
  std::optional<ChatTemplate> chat_template;  // absent when the model carries none
  std::optional<LoraAdapter> adapter;
  std::vector<int32_t> stop_ids;  // <|im_end|>, <|endoftext|>, eos
};

// The flags every inference verb takes (with a value, and boolean).
std::vector<std::string> infer_value_flags();
std::vector<std::string> infer_bool_flags();

// Applies --threads (before anything starts the thread pool) and checks --device.
void infer_setup(const Args& a, const char* verb);
InferModel infer_model_load(const Args& a);
GenerateOptions infer_generate_options(const Args& a, const InferModel& m);
EngineOptions infer_engine_options(const Args& a);

// Renders `messages` with the model's chat template and a generation prompt (--no-thinking turns Qwen3's
// thinking off). ConfigError when the model has no chat template.
std::string infer_render_chat(const InferModel& m, const nlohmann::json& messages, bool no_thinking);

// Prints the text of generated ids as they come: each call decodes all ids so far and writes what is new,
// holding back a trailing incomplete UTF-8 character (U+FFFD); flushes stdout.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tok) : tok_(tok) {}
  void push(int32_t id);
  // The text of every id pushed.
  std::string text() const { return tok_.decode(ids_); }

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t printed_ = 0;
};

}  // namespace tune::cli
