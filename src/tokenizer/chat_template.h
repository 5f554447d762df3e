// Chat templates: renders a model's Jinja chat template exactly as transformers'
// apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False, **kwargs) does, on the
// jinja engine in tokenizer/jinja/. Variables: messages, tools (None when absent), documents (None),
// add_generation_prompt, bos_token/eos_token when set, then ChatTemplateOptions::extra (enable_thinking).
// Immutable once built: render() may run on several threads at once.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/jinja/template.h"

namespace tune {

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  nlohmann::json extra =
      nlohmann::json::object();  // extra template variables, e.g. {"enable_thinking": false}
};

class ChatTemplate {
 public:
  // Parses; a syntax error or unsupported construct throws tune::FormatError naming the construct and line.
  explicit ChatTemplate(std::string source);
  // chat_template.jinja, else tokenizer_config.json "chat_template" (a string, or a list of {name, template}
  // from which "default" is taken), else chat_template.json; bos/eos tokens from tokenizer_config.json.
  static ChatTemplate from_model_dir(const std::string& dir);

  // messages: OpenAI-style array; tools: array or null. Throws tune::FormatError when the template raises
  // (raise_exception) or fails on the input (the message says which line and why).
  // nlohmann::json sorts object keys, so tool schemas come out of `tojson` in sorted order; use
  // render_ordered with nlohmann::ordered_json to keep the original order, as transformers (Python dicts)
  // does.
  std::string render(const nlohmann::json& messages, const nlohmann::json& tools,
                     const ChatTemplateOptions& opt) const;
  std::string render_ordered(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                             const ChatTemplateOptions& opt) const;
  // An empty token is left undefined in the template, as transformers does for a tokenizer without one.
  void set_special_tokens(std::string bos, std::string eos);

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Template template_;
  std::string bos_token_, eos_token_;
};

}  // namespace tune
