// JSONL reading and per-format validation (see jsonl.h). Every error names FILE:LINE, the field and what a
// good record looks like; the chat formats are mapped onto OpenAI messages here, so the rest of the pipeline
// sees one shape.
#include "data/jsonl.h"

#include <fstream>

#include "core/error.h"

namespace tune {

namespace {

const char* const kMessagesHint =
    R"(expected {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]})";
const char* const kShareGptHint =
    R"(expected {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]})";
const char* const kAlpacaHint = R"(expected {"instruction": "...", "input": "", "output": "..."})";
const char* const kTextHint = R"(expected {"text": "..."})";
const char* const kTokensHint =
    R"(expected {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}; labels are aligned with input_ids )"
    "(the model shifts them) and -100 marks tokens that are not trained";
const char* const kJsonlHint =
    "each line must hold one complete JSON object (JSONL); convert a JSON array file with: jq -c '.[]' FILE";

[[noreturn]] void bad(const std::string& source, const std::string& reason, const std::string& hint) {
  throw FormatError(source + ": " + reason, hint);
}

std::string type_of(const OrderedJson& j) {
  return j.type_name();
}

// A top-level field of the record; a missing one is usually a record of another format in the same file.
const OrderedJson& top_field(const OrderedJson& j, const char* key, DataFormat format,
                             const std::string& source, const char* hint) {
  if (!j.contains(key))
    bad(source, std::string("missing field '") + key + "' (a " + data_format_name(format) + " record)",
        std::string(hint) +
            "; every record of a file has the file's format (detected from its first record)");
  return j[key];
}

std::string string_field(const OrderedJson& j, const char* key, DataFormat format, const std::string& source,
                         const char* hint) {
  const OrderedJson& v = top_field(j, key, format, source, hint);
  if (!v.is_string()) bad(source, std::string("'") + key + "' must be a string, got " + type_of(v), hint);
  return v.get<std::string>();
}

// An optional string field: absent or null is "".
std::string optional_string(const OrderedJson& j, const char* key, const std::string& source,
                            const char* hint) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (!j[key].is_string())
    bad(source, std::string("'") + key + "' must be a string, got " + type_of(j[key]), hint);
  return j[key].get<std::string>();
}

// `tools`: absent or null, an array, or (LLaMA-Factory's ShareGPT) a string holding a JSON array.
OrderedJson tools_field(const OrderedJson& j, const std::string& source, const char* hint) {
  if (!j.contains("tools") || j["tools"].is_null()) return nullptr;
  OrderedJson tools = j["tools"];
  if (tools.is_string()) {
    const std::string s = tools.get<std::string>();
    if (s.find_first_not_of(" \t\r\n") == std::string::npos) return nullptr;
    try {
      tools = OrderedJson::parse(s);
    } catch (const OrderedJson::parse_error&) {
      bad(source, "'tools' is a string that is not JSON", "give tools as an array of function schemas");
    }
  }
  if (!tools.is_array()) bad(source, "'tools' must be an array, got " + type_of(tools), hint);
  return tools;
}

void require_assistant(const Record& r, const char* hint) {
  for (const OrderedJson& m : r.messages)
    if (m["role"] == "assistant") return;
  bad(r.source, "no assistant turn",
      std::string(hint) + "; a training conversation needs at least one assistant message to learn from");
}

bool is_chat_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

Record parse_messages(const OrderedJson& j, Record r) {
  r.messages = chat_messages_normalize(top_field(j, "messages", r.format, r.source, kMessagesHint), r.source);
  r.tools = tools_field(j, r.source, kMessagesHint);
  require_assistant(r, kMessagesHint);
  return r;
}

// A ShareGPT function_call turn holds {"name", "arguments"} (or a list of them) as JSON text; it becomes an
// assistant turn with OpenAI tool_calls, which the chat template renders in the model's own tool syntax.
OrderedJson sharegpt_tool_calls(const std::string& value, const std::string& where,
                                const std::string& source) {
  const char* hint = R"(a function_call value is JSON text: {"name": "...", "arguments": {...}})";
  OrderedJson calls;
  try {
    calls = OrderedJson::parse(value);
  } catch (const OrderedJson::parse_error&) {
    bad(source, where + ": function_call value is not JSON", hint);
  }
  if (calls.is_object()) calls = OrderedJson::array({calls});
  if (!calls.is_array() || calls.empty())
    bad(source, where + ": function_call value must be an object or a list", hint);
  OrderedJson out = OrderedJson::array();
  for (const OrderedJson& c : calls) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string())
      bad(source, where + ": function_call needs a string 'name'", hint);
    out.push_back(
        {{"type", "function"},
         {"function", {{"name", c["name"]}, {"arguments", c.value("arguments", OrderedJson::object())}}}});
  }
  return out;
}

Record parse_sharegpt(const OrderedJson& j, Record r) {
  const OrderedJson& turns = top_field(j, "conversations", r.format, r.source, kShareGptHint);
  if (!turns.is_array())
    bad(r.source, "'conversations' must be an array, got " + type_of(turns), kShareGptHint);
  if (turns.empty()) bad(r.source, "empty conversation: 'conversations' has no turns", kShareGptHint);
  OrderedJson messages = OrderedJson::array();
  const std::string system = optional_string(j, "system", r.source, kShareGptHint);
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  for (size_t i = 0; i < turns.size(); ++i) {
    const OrderedJson& t = turns[i];
    const std::string where = "conversations[" + std::to_string(i) + "]";
    if (!t.is_object()) bad(r.source, where + " must be an object, got " + type_of(t), kShareGptHint);
    // Some exports write OpenAI's role/content inside "conversations"; both spellings are accepted.
    const char* from_key = t.contains("from") ? "from" : "role";
    const char* value_key = t.contains("value") ? "value" : "content";
    if (!t.contains(from_key)) bad(r.source, where + ": missing field 'from'", kShareGptHint);
    if (!t[from_key].is_string())
      bad(r.source, where + ".from must be a string, got " + type_of(t[from_key]), kShareGptHint);
    if (!t.contains(value_key)) bad(r.source, where + ": missing field 'value'", kShareGptHint);
    if (!t[value_key].is_string())
      bad(r.source, where + ".value must be a string, got " + type_of(t[value_key]), kShareGptHint);
    const std::string from = t[from_key].get<std::string>();
    const std::string value = t[value_key].get<std::string>();
    std::string role;
    if (from == "system")
      role = "system";
    else if (from == "human" || from == "user")
      role = "user";
    else if (from == "gpt" || from == "assistant" || from == "model")
      role = "assistant";
    else if (from == "tool" || from == "observation" || from == "function_response")
      role = "tool";
    else if (from == "function_call") {
      messages.push_back({{"role", "assistant"},
                          {"content", ""},
                          {"tool_calls", sharegpt_tool_calls(value, where, r.source)}});
      continue;
    } else {
      bad(r.source, where + ": unknown role '" + from + "'",
          "ShareGPT 'from' is one of human, gpt, system, tool, observation, function_call");
    }
    messages.push_back({{"role", role}, {"content", value}});
  }
  r.messages = chat_messages_normalize(messages, r.source);
  r.tools = tools_field(j, r.source, kShareGptHint);
  require_assistant(r, kShareGptHint);
  return r;
}

// user = instruction, then "\n\n" + input when there is one; assistant = output. `system` and `history`
// ([[query, response], ...], earlier turns, trained like the last one as LLaMA-Factory does) are optional.
Record parse_alpaca(const OrderedJson& j, Record r) {
  const std::string instruction = string_field(j, "instruction", r.format, r.source, kAlpacaHint);
  const std::string input = optional_string(j, "input", r.source, kAlpacaHint);
  const std::string output = string_field(j, "output", r.format, r.source, kAlpacaHint);
  const std::string system = optional_string(j, "system", r.source, kAlpacaHint);
  OrderedJson messages = OrderedJson::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  if (j.contains("history") && !j["history"].is_null()) {
    const OrderedJson& h = j["history"];
    const char* hint = R"(history is a list of [query, response] string pairs)";
    if (!h.is_array()) bad(r.source, "'history' must be an array, got " + type_of(h), hint);
    for (size_t i = 0; i < h.size(); ++i) {
      if (!h[i].is_array() || h[i].size() != 2 || !h[i][0].is_string() || !h[i][1].is_string())
        bad(r.source, "history[" + std::to_string(i) + "] must be a [query, response] pair of strings", hint);
      messages.push_back({{"role", "user"}, {"content", h[i][0]}});
      messages.push_back({{"role", "assistant"}, {"content", h[i][1]}});
    }
  }
  std::string user = instruction;
  if (!input.empty()) user += (user.empty() ? "" : "\n\n") + input;
  messages.push_back({{"role", "user"}, {"content", user}});
  messages.push_back({{"role", "assistant"}, {"content", output}});
  r.messages = std::move(messages);
  r.tools = nullptr;
  return r;
}

Record parse_text(const OrderedJson& j, Record r) {
  r.text = string_field(j, "text", r.format, r.source, kTextHint);
  if (r.text.empty()) bad(r.source, "'text' is empty", kTextHint);
  return r;
}

// An array of token ids (>= 0), or of labels (>= 0 or -100).
std::vector<int32_t> int_array(const OrderedJson& v, const char* key, bool labels,
                               const std::string& source) {
  if (!v.is_array())
    bad(source, std::string("'") + key + "' must be an array of integers, got " + type_of(v), kTokensHint);
  std::vector<int32_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const OrderedJson& x = v[i];
    const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    if (!x.is_number_integer()) bad(source, where + " must be an integer, got " + type_of(x), kTokensHint);
    const int64_t n = x.get<int64_t>();
    if (n > INT32_MAX || (n < 0 && !(labels && n == -100)))
      bad(source, where + " = " + std::to_string(n) + " is not a token id" + (labels ? " or -100" : ""),
          kTokensHint);
    out.push_back(static_cast<int32_t>(n));
  }
  return out;
}

Record parse_tokens(const OrderedJson& j, Record r) {
  r.input_ids =
      int_array(top_field(j, "input_ids", r.format, r.source, kTokensHint), "input_ids", false, r.source);
  if (r.input_ids.empty()) bad(r.source, "'input_ids' is empty", kTokensHint);
  if (j.contains("labels") && !j["labels"].is_null()) {
    r.labels = int_array(j["labels"], "labels", true, r.source);
    if (r.labels.size() != r.input_ids.size())
      bad(r.source,
          "label length mismatch: 'labels' has " + std::to_string(r.labels.size()) +
              " entries, 'input_ids' has " + std::to_string(r.input_ids.size()),
          kTokensHint);
  } else {
    r.labels = r.input_ids;
  }
  return r;
}

OrderedJson parse_line(const std::string& line, const std::string& source) {
  try {
    return OrderedJson::parse(line);
  } catch (const OrderedJson::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 7: syntax error ..." -> "column 7: ..."
    std::string what = e.what();
    if (size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    if (size_t p = what.find("at line 1, "); p != std::string::npos) what = what.substr(p + 11);
    bad(source, "invalid JSON: " + what, kJsonlHint);
  }
}

}  // namespace

DataFormat data_format_parse(const std::string& name) {
  if (name == "auto") return DataFormat::kAuto;
  if (name == "messages") return DataFormat::kMessages;
  if (name == "sharegpt") return DataFormat::kShareGpt;
  if (name == "alpaca") return DataFormat::kAlpaca;
  if (name == "text") return DataFormat::kText;
  if (name == "tokens") return DataFormat::kTokens;
  throw ConfigError("unknown data format '" + name + "'",
                    "use auto, messages, sharegpt, alpaca, text or tokens");
}

const char* data_format_name(DataFormat format) {
  switch (format) {
    case DataFormat::kAuto:
      return "auto";
    case DataFormat::kMessages:
      return "messages";
    case DataFormat::kShareGpt:
      return "sharegpt";
    case DataFormat::kAlpaca:
      return "alpaca";
    case DataFormat::kText:
      return "text";
    case DataFormat::kTokens:
      return "tokens";
  }
  return "?";
}

DataFormat data_format_detect(const OrderedJson& j, const std::string& source) {
  if (!j.is_object()) bad(source, "record is a JSON " + type_of(j) + ", not an object", kJsonlHint);
  if (j.contains("messages")) return DataFormat::kMessages;
  if (j.contains("conversations")) return DataFormat::kShareGpt;
  if (j.contains("instruction") || j.contains("output")) return DataFormat::kAlpaca;
  if (j.contains("text")) return DataFormat::kText;
  if (j.contains("input_ids")) return DataFormat::kTokens;
  bad(source,
      "cannot tell the data format: no 'messages', 'conversations', 'instruction', 'text' or 'input_ids' key",
      "name it with --format messages|sharegpt|alpaca|text|tokens");
}

OrderedJson chat_messages_normalize(const OrderedJson& messages, const std::string& source) {
  if (!messages.is_array())
    bad(source, "'messages' must be an array, got " + type_of(messages), kMessagesHint);
  if (messages.empty()) bad(source, "empty conversation: no messages", kMessagesHint);
  OrderedJson out = OrderedJson::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const OrderedJson& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(source, where + " must be an object, got " + type_of(m), kMessagesHint);
    if (!m.contains("role")) bad(source, where + ": missing field 'role'", kMessagesHint);
    if (!m["role"].is_string())
      bad(source, where + ".role must be a string, got " + type_of(m["role"]), kMessagesHint);
    const std::string role = m["role"].get<std::string>();
    if (!is_chat_role(role))
      bad(source, where + ": unknown role '" + role + "'", "roles are system, user, assistant and tool");
    OrderedJson msg = m;  // keeps tool_calls, reasoning_content, name, tool_call_id for the template
    const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (has_calls && (!m["tool_calls"].is_array() || role != "assistant"))
      bad(source, where + ".tool_calls must be an array on an assistant message",
          R"(tool_calls: [{"type": "function", "function": {"name": "...", "arguments": {...}}}])");
    if (m.contains("reasoning_content") && !m["reasoning_content"].is_null() &&
        !m["reasoning_content"].is_string())
      bad(source, where + ".reasoning_content must be a string, got " + type_of(m["reasoning_content"]),
          kMessagesHint);
    if (!m.contains("content") || m["content"].is_null()) {
      if (!has_calls) bad(source, where + ": missing field 'content'", kMessagesHint);
      msg["content"] = "";
    } else if (m["content"].is_array()) {
      std::string joined;
      for (size_t k = 0; k < m["content"].size(); ++k) {
        const OrderedJson& part = m["content"][k];
        const std::string pw = where + ".content[" + std::to_string(k) + "]";
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          bad(source, pw + ": only {\"type\": \"text\", \"text\": \"...\"} parts are supported",
              "tune trains on text; give images and other media as text or leave them out");
        joined += (k ? "\n" : "") + part["text"].get<std::string>();
      }
      msg["content"] = joined;
    } else if (!m["content"].is_string()) {
      bad(source, where + ".content must be a string, got " + type_of(m["content"]), kMessagesHint);
    }
    out.push_back(std::move(msg));
  }
  return out;
}

Record record_parse(const OrderedJson& j, DataFormat format, const std::string& source) {
  TUNE_CHECK(format != DataFormat::kAuto) << "record_parse needs a format";
  if (!j.is_object()) bad(source, "record is a JSON " + type_of(j) + ", not an object", kJsonlHint);
  Record r;
  r.source = source;
  r.format = format;
  switch (format) {
    case DataFormat::kMessages:
      return parse_messages(j, std::move(r));
    case DataFormat::kShareGpt:
      return parse_sharegpt(j, std::move(r));
    case DataFormat::kAlpaca:
      return parse_alpaca(j, std::move(r));
    case DataFormat::kText:
      return parse_text(j, std::move(r));
    case DataFormat::kTokens:
      return parse_tokens(j, std::move(r));
    case DataFormat::kAuto:
      break;
  }
  TUNE_CHECK(false) << "unreachable";
  return r;
}

JsonlFile jsonl_read(const std::string& path, const JsonlOptions& options) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(path + ": cannot open", "check the path to the data file");
  constexpr size_t kMaxReasons = 5;
  JsonlFile out;
  out.path = path;
  out.format = options.format;
  std::string line;
  for (int64_t lineno = 1; std::getline(f, line); ++lineno) {
    if (lineno == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 byte order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const std::string source = path + ":" + std::to_string(lineno);
    try {
      const OrderedJson j = parse_line(line, source);
      if (out.format == DataFormat::kAuto) out.format = data_format_detect(j, source);
      out.records.push_back(record_parse(j, out.format, source));
    } catch (const FormatError& e) {
      if (!options.skip_bad) throw;
      ++out.skipped;
      if (out.skip_reasons.size() < kMaxReasons) out.skip_reasons.push_back(e.what());
    }
  }
  if (f.bad()) throw IoError(path + ": read error");
  return out;
}

}  // namespace tune
