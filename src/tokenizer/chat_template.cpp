// ChatTemplate (see chat_template.h): finds the template in a model directory and builds the variables
// transformers passes to it.
#include "tokenizer/chat_template.h"

#include <filesystem>

#include "core/error.h"
#include "io/json.h"

namespace tune {

namespace {

// tokenizer_config.json stores a special token as a string, as {"content": ...} (an AddedToken), or null.
std::string token_text(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return "";
  const auto& t = config[key];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string())
    return t["content"].get<std::string>();
  return "";
}

std::string template_from_config(const nlohmann::json& value, const std::string& path) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
    throw FormatError(path + ": chat_template is a list without a \"default\" entry",
                      "tune renders the default template; name it \"default\"");
  }
  throw FormatError(path + ": chat_template must be a string or a list of {name, template}");
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)), template_(source_) {}

ChatTemplate ChatTemplate::from_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  nlohmann::json config = nlohmann::json::object();
  const fs::path config_path = root / "tokenizer_config.json";
  if (fs::exists(config_path)) config = json_load_file(config_path.string());

  std::string source;
  bool found = false;
  if (fs::exists(root / "chat_template.jinja")) {
    source = read_file((root / "chat_template.jinja").string());
    found = true;
  } else if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    source = template_from_config(config["chat_template"], config_path.string());
    found = true;
  } else if (fs::exists(root / "chat_template.json")) {
    const nlohmann::json j = json_load_file((root / "chat_template.json").string());
    if (j.contains("chat_template")) {
      source = template_from_config(j["chat_template"], (root / "chat_template.json").string());
      found = true;
    }
  }
  if (!found)
    throw FormatError(dir + ": no chat template found",
                      "expected chat_template.jinja, or \"chat_template\" in tokenizer_config.json");
  ChatTemplate t(std::move(source));
  t.set_special_tokens(token_text(config, "bos_token"), token_text(config, "eos_token"));
  return t;
}

void ChatTemplate::set_special_tokens(std::string bos, std::string eos) {
  bos_token_ = std::move(bos);
  eos_token_ = std::move(eos);
}

std::string ChatTemplate::render(const nlohmann::json& messages, const nlohmann::json& tools,
                                 const ChatTemplateOptions& opt) const {
  return render_ordered(nlohmann::ordered_json(messages), nlohmann::ordered_json(tools), opt);
}

std::string ChatTemplate::render_ordered(const nlohmann::ordered_json& messages,
                                         const nlohmann::ordered_json& tools,
                                         const ChatTemplateOptions& opt) const {
  if (!messages.is_array()) throw FormatError("chat template: messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array())
    throw FormatError("chat template: tools must be a JSON array or null");
  // The order of transformers' apply_chat_template: special tokens, then the caller's kwargs, passed next to
  // messages / tools / documents / add_generation_prompt.
  jinja::DictData ctx;
  if (!bos_token_.empty()) ctx.set("bos_token", jinja::Value(bos_token_));
  if (!eos_token_.empty()) ctx.set("eos_token", jinja::Value(eos_token_));
  if (!opt.extra.is_null()) {
    if (!opt.extra.is_object()) throw FormatError("chat template: extra variables must be a JSON object");
    for (const auto& [k, v] : opt.extra.items())
      ctx.set(k, jinja::Value::from_json(nlohmann::ordered_json(v)));
  }
  ctx.set("messages", jinja::Value::from_json(messages));
  ctx.set("tools", jinja::Value::from_json(tools));
  ctx.set("documents", jinja::Value::none());
  ctx.set("add_generation_prompt", jinja::Value(opt.add_generation_prompt));
  return template_.render(ctx);
}

}  // namespace tune
