// Training records from JSONL files: one JSON object per line, in one of five formats (OpenAI messages,
// ShareGPT, Alpaca, raw text, pre-tokenized ids), detected per file from its first record or forced. Chat
// formats are normalized to OpenAI messages. Bad records raise FormatError "FILE:LINE: reason (hint: ...)" or
// are skipped and counted. Depends on core/error.h and nlohmann::json (ordered, so tool schemas keep key
// order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tune {

// Keeps the key order of the file: chat templates print tool schemas with `tojson`, as transformers does
// from Python dicts.
using OrderedJson = nlohmann::ordered_json;

enum class DataFormat { kAuto, kMessages, kShareGpt, kAlpaca, kText, kTokens };

// "auto", "messages", "sharegpt", "alpaca", "text", "tokens"; ConfigError otherwise.
DataFormat data_format_parse(const std::string& name);
const char* data_format_name(DataFormat format);

// One record, normalized. Chat formats (messages, sharegpt, alpaca) fill `messages`/`tools`; kText fills
// `text`; kTokens fills `input_ids` and `labels` (same length; -100 = not trained).
struct Record {
  std::string source;  // "FILE:LINE", the prefix of every error about this record
  DataFormat format = DataFormat::kAuto;
  OrderedJson messages;  // [{"role": system|user|assistant|tool, "content": string, ...}]
  OrderedJson tools;     // array, or null
  std::string text;
  std::vector<int32_t> input_ids, labels;
};

struct JsonlOptions {
  DataFormat format = DataFormat::kAuto;
  bool skip_bad = false;  // skip bad records (counted) instead of throwing
};

struct JsonlFile {
  std::string path;
  DataFormat format = DataFormat::kAuto;  // detected or forced; kAuto only when the file has no good record
  std::vector<Record> records;
  int64_t skipped = 0;
  std::vector<std::string> skip_reasons;  // the first few errors of skipped records, "FILE:LINE: reason"
};

// Reads a JSONL file; blank lines are skipped, line numbers are 1-based. IoError if it cannot be read.
JsonlFile jsonl_read(const std::string& path, const JsonlOptions& options = {});

// The format of a record by its keys: messages, conversations, instruction+output, text, input_ids.
// FormatError (prefixed by `source`) if none matches.
DataFormat data_format_detect(const OrderedJson& record, const std::string& source);
// Validates and normalizes one record of a known format; FormatError prefixed by `source`.
Record record_parse(const OrderedJson& record, DataFormat format, const std::string& source);

// Validates OpenAI messages for rendering: roles system|user|assistant|tool, string content (a list of text
// parts is joined with "\n", as vLLM does), null content only on an assistant turn with tool_calls (becomes
// ""). Needs no assistant turn (a request for generation ends with a user turn).
OrderedJson chat_messages_normalize(const OrderedJson& messages, const std::string& source);

}  // namespace tune
