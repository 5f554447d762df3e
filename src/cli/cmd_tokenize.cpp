// tune tokenize: the ids of a text, or a conversation rendered by the model's chat template and its ids.
// Reads the model directory's tokenizer.json (+ tokenizer_config.json / chat_template.jinja) only.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "data/jsonl.h"
#include "io/json.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tune::cli {

namespace {

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
}

// An OpenAI-style request object {"messages": [...], "tools"?: [...]}, or a bare messages array.
void load_request(const std::string& path, OrderedJson& messages, OrderedJson& tools) {
  OrderedJson j;
  try {
    j = OrderedJson::parse(read_file(path));
  } catch (const OrderedJson::parse_error& e) {
    throw FormatError(path + ": invalid JSON: " + e.what(), "--chat takes a JSON object with \"messages\"");
  }
  if (j.is_array()) j = OrderedJson{{"messages", j}};
  if (!j.is_object() || !j.contains("messages"))
    throw FormatError(path + ": missing field 'messages'", "--chat takes a JSON object with \"messages\"");
  messages = chat_messages_normalize(j["messages"], path);
  tools = j.contains("tools") ? j["tools"] : OrderedJson();
  if (!tools.is_null() && !tools.is_array()) throw FormatError(path + ": 'tools' must be an array");
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  Args a("tokenize", argc, argv, {"--model", "--text", "--file", "--chat"},
         {"--generation-prompt", "--no-thinking"});
  const std::string model = a.require("--model");
  if (a.has("--text") + a.has("--file") + a.has("--chat") != 1)
    throw ConfigError("tune tokenize: give one of --text, --file or --chat",
                      "tune tokenize --model DIR --text \"Hello\"  |  --file F  |  --chat REQUEST.json");
  const Tokenizer tokenizer = Tokenizer::from_dir(model);
  if (!a.has("--chat")) {
    const std::string text = a.has("--text") ? a.get("--text", "") : read_file(a.require("--file"));
    print_ids(tokenizer.encode(text));
    return 0;
  }
  OrderedJson messages, tools;
  load_request(a.require("--chat"), messages, tools);
  const ChatTemplate chat_template = ChatTemplate::from_model_dir(model);
  ChatTemplateOptions options;
  options.add_generation_prompt = a.has("--generation-prompt");
  if (a.has("--no-thinking")) options.extra["enable_thinking"] = false;
  const std::string text = chat_template.render_ordered(messages, tools, options);
  std::printf("%s%s", text.c_str(), !text.empty() && text.back() == '\n' ? "" : "\n");
  print_ids(tokenizer.encode(text));
  return 0;
}

}  // namespace tune::cli
