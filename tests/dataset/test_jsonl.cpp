// Tests of JSONL reading: every format's mapping onto records, format detection, line numbers (blank lines,
// CRLF, BOM), and each kind of bad record, with its FILE:LINE in the message, or skipped and counted.
// Needs no model files.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "data/jsonl.h"
#include "test_util.h"

namespace tune {
namespace {

using test::TempDir;
using test::write_text;

JsonlFile read_text(const TempDir& dir, const std::string& text, JsonlOptions options = {}) {
  const std::string path = dir / "data.jsonl";
  write_text(path, text);
  return jsonl_read(path, options);
}

// Reading `text` fails with a FormatError whose message contains each of `parts`.
void expect_bad(const std::string& text, const std::vector<std::string>& parts, JsonlOptions options = {}) {
  TempDir dir;
  try {
    read_text(dir, text, options);
    ADD_FAILURE() << "no error for: " << text;
  } catch (const FormatError& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty()) << e.what();
  }
}

TEST(Jsonl, Messages) {
  TempDir dir;
  const JsonlFile f = read_text(
      dir, R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"},)"
           R"({"role":"assistant","content":"A"}],"tools":[{"type":"function","function":{"name":"f"}}]})"
           "\n");
  ASSERT_EQ(f.format, DataFormat::kMessages);
  ASSERT_EQ(f.records.size(), 1u);
  const Record& r = f.records[0];
  EXPECT_EQ(r.source, dir / "data.jsonl" + ":1");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[2]["role"], "assistant");
  EXPECT_EQ(r.messages[2]["content"], "A");
  ASSERT_TRUE(r.tools.is_array());
  EXPECT_EQ(r.tools[0]["function"]["name"], "f");
}

TEST(Jsonl, MessagesContentPartsToolCallsAndKeyOrder) {
  TempDir dir;
  const JsonlFile f = read_text(
      dir,
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},)"
      R"({"role":"assistant","content":null,"tool_calls":[{"type":"function",)"
      R"("function":{"name":"f","arguments":{"z":1,"a":2}}}]},)"
      R"({"role":"tool","content":"42"},{"role":"assistant","content":"done","reasoning_content":"think"}]})");
  const Record& r = f.records.at(0);
  EXPECT_EQ(r.messages[0]["content"], "a\nb");
  EXPECT_EQ(r.messages[1]["content"], "");
  // Keys keep the file's order (z before a), as transformers' Python dicts do.
  EXPECT_EQ(r.messages[1]["tool_calls"][0]["function"]["arguments"].dump(), R"({"z":1,"a":2})");
  EXPECT_EQ(r.messages[3]["reasoning_content"], "think");
  EXPECT_TRUE(r.tools.is_null());
}

TEST(Jsonl, ShareGpt) {
  TempDir dir;
  const JsonlFile f = read_text(
      dir, R"({"system":"S","conversations":[{"from":"human","value":"Q"},)"
           R"({"from":"function_call","value":"{\"name\":\"f\",\"arguments\":{\"x\":1}}"},)"
           R"({"from":"observation","value":"R"},{"from":"gpt","value":"A"}],"tools":"[{\"name\":\"f\"}]"})"
           "\n"
           R"({"conversations":[{"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]})");
  ASSERT_EQ(f.format, DataFormat::kShareGpt);
  ASSERT_EQ(f.records.size(), 2u);
  const OrderedJson& m = f.records[0].messages;
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[0]["content"], "S");
  EXPECT_EQ(m[1]["role"], "user");
  EXPECT_EQ(m[2]["role"], "assistant");
  EXPECT_EQ(m[2]["content"], "");
  EXPECT_EQ(m[2]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_EQ(m[2]["tool_calls"][0]["function"]["arguments"]["x"], 1);
  EXPECT_EQ(m[3]["role"], "tool");
  EXPECT_EQ(m[4]["role"], "assistant");
  EXPECT_EQ(f.records[0].tools[0]["name"], "f");
  EXPECT_EQ(f.records[1].messages[1]["content"], "A2");
}

TEST(Jsonl, Alpaca) {
  TempDir dir;
  const JsonlFile f = read_text(
      dir, R"({"instruction":"Translate","input":"cat","output":"chat"})"
           "\n"
           R"({"instruction":"Hi","input":"","output":"Hello","system":"S","history":[["q","a"]]})");
  ASSERT_EQ(f.format, DataFormat::kAlpaca);
  ASSERT_EQ(f.records.size(), 2u);
  const OrderedJson& a = f.records[0].messages;
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]["role"], "user");
  EXPECT_EQ(a[0]["content"], "Translate\n\ncat");
  EXPECT_EQ(a[1]["role"], "assistant");
  EXPECT_EQ(a[1]["content"], "chat");
  const OrderedJson& b = f.records[1].messages;
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(b[0]["content"], "S");
  EXPECT_EQ(b[1]["content"], "q");
  EXPECT_EQ(b[2]["content"], "a");
  EXPECT_EQ(b[3]["content"], "Hi");  // an empty input adds nothing
  EXPECT_EQ(b[4]["content"], "Hello");
}

TEST(Jsonl, TextAndTokens) {
  TempDir dir;
  const JsonlFile t = read_text(dir, R"({"text":"hello"})");
  ASSERT_EQ(t.format, DataFormat::kText);
  EXPECT_EQ(t.records.at(0).text, "hello");
  const JsonlFile k = read_text(dir, R"({"input_ids":[1,2,3],"labels":[-100,2,3]})"
                                     "\n"
                                     R"({"input_ids":[4,5]})");
  ASSERT_EQ(k.format, DataFormat::kTokens);
  EXPECT_EQ(k.records.at(0).input_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(k.records.at(0).labels, (std::vector<int32_t>{-100, 2, 3}));
  EXPECT_EQ(k.records.at(1).labels, (std::vector<int32_t>{4, 5}));  // no labels: all trained
}

TEST(Jsonl, LineNumbersBlankLinesCrlfAndBom) {
  TempDir dir;
  const JsonlFile f = read_text(dir, "\xEF\xBB\xBF{\"text\":\"a\"}\r\n\r\n   \n{\"text\":\"b\"}\r\n");
  ASSERT_EQ(f.records.size(), 2u);
  EXPECT_EQ(f.records[0].source, dir / "data.jsonl" + ":1");
  EXPECT_EQ(f.records[1].source, dir / "data.jsonl" + ":4");
  expect_bad("{\"text\":\"a\"}\n\n\n{\"text\": 5}\n",
             {"data.jsonl:4:", "'text' must be a string, got number"});
}

TEST(Jsonl, ForcedFormat) {
  TempDir dir;
  // Detection would say messages (the first key it checks); forcing text reads the "text" field.
  const JsonlFile f = read_text(dir, R"({"text":"t","messages":[]})", {DataFormat::kText, false});
  EXPECT_EQ(f.records.at(0).text, "t");
  expect_bad(R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]})",
             {"data.jsonl:1:", "missing field 'text'"}, {DataFormat::kText, false});
}

TEST(Jsonl, FormatNames) {
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kMessages, DataFormat::kShareGpt, DataFormat::kAlpaca,
                       DataFormat::kText, DataFormat::kTokens})
    EXPECT_EQ(data_format_parse(data_format_name(f)), f);
  EXPECT_THROW(data_format_parse("csv"), ConfigError);
}

TEST(Jsonl, BadRecords) {
  const std::string ok = R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]})";
  expect_bad(ok + "\n{\"messages\": [}\n", {"data.jsonl:2:", "invalid JSON", "column"});
  expect_bad("[1, 2]\n", {"data.jsonl:1:", "not an object"});
  expect_bad(R"({"prompt":"p"})", {"data.jsonl:1:", "cannot tell the data format"});
  // A record of another format in a messages file: the missing field, and the hint says why.
  expect_bad(ok + "\n" + R"({"text":"t"})",
             {"data.jsonl:2:", "missing field 'messages'", "detected from its first"});
  expect_bad(R"({"messages":"hi"})", {"data.jsonl:1:", "'messages' must be an array, got string"});
  expect_bad(R"({"messages":[]})", {"data.jsonl:1:", "empty conversation"});
  expect_bad(R"({"messages":[{"role":"user","content":"q"}]})", {"data.jsonl:1:", "no assistant turn"});
  expect_bad(R"({"messages":[{"role":"bot","content":"q"},{"role":"assistant","content":"a"}]})",
             {"data.jsonl:1:", "messages[0]: unknown role 'bot'"});
  expect_bad(R"({"messages":[{"content":"q"}]})", {"data.jsonl:1:", "messages[0]: missing field 'role'"});
  expect_bad(R"({"messages":[{"role":"user"},{"role":"assistant","content":"a"}]})",
             {"data.jsonl:1:", "messages[0]: missing field 'content'"});
  expect_bad(R"({"messages":[{"role":"user","content":7},{"role":"assistant","content":"a"}]})",
             {"data.jsonl:1:", "messages[0].content must be a string, got number"});
  expect_bad(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":"x"}]},)"
             R"({"role":"assistant","content":"a"}]})",
             {"data.jsonl:1:", "messages[0].content[0]"});
  expect_bad(R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"tools":{}})",
             {"data.jsonl:1:", "'tools' must be an array"});
  expect_bad(R"({"conversations":[{"from":"alien","value":"q"}]})",
             {"data.jsonl:1:", "unknown role 'alien'"});
  expect_bad(R"({"conversations":[]})", {"data.jsonl:1:", "empty conversation"});
  expect_bad(R"({"conversations":[{"from":"human","value":"q"}]})", {"data.jsonl:1:", "no assistant turn"});
  expect_bad(R"({"conversations":[{"from":"human","value":1}]})",
             {"data.jsonl:1:", "conversations[0].value must be a string"});
  expect_bad(R"({"conversations":[{"from":"function_call","value":"not json"}]})",
             {"data.jsonl:1:", "function_call value is not JSON"});
  expect_bad(R"({"instruction":"i","input":""})", {"data.jsonl:1:", "missing field 'output'"});
  expect_bad(R"({"instruction":["i"],"output":"o"})",
             {"data.jsonl:1:", "'instruction' must be a string, got array"});
  expect_bad(R"({"text":""})", {"data.jsonl:1:", "'text' is empty"});
  expect_bad(R"({"input_ids":[1,2,3],"labels":[1,2]})",
             {"data.jsonl:1:", "label length mismatch", "aligned"});
  expect_bad(R"({"input_ids":[1,"2"]})", {"data.jsonl:1:", "input_ids[1] must be an integer, got string"});
  expect_bad(R"({"input_ids":[1,-100]})", {"data.jsonl:1:", "input_ids[1] = -100 is not a token id"});
  expect_bad(R"({"input_ids":[1,2],"labels":[-1,2]})", {"data.jsonl:1:", "labels[0] = -1"});
  expect_bad(R"({"input_ids":[]})", {"data.jsonl:1:", "'input_ids' is empty"});
}

TEST(Jsonl, SkipBadCountsAndKeepsTheRest) {
  TempDir dir;
  const std::string ok = R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]})";
  // The first line cannot be detected; detection uses the first good record.
  const JsonlFile f = read_text(dir,
                                "not json\n" + ok + "\n" + R"({"messages":[{"role":"user","content":"q"}]})" +
                                    "\n\n" + ok + "\n" + R"({"text":"x"})" + "\n",
                                {DataFormat::kAuto, true});
  EXPECT_EQ(f.format, DataFormat::kMessages);
  ASSERT_EQ(f.records.size(), 2u);
  EXPECT_EQ(f.records[0].source, dir / "data.jsonl" + ":2");
  EXPECT_EQ(f.records[1].source, dir / "data.jsonl" + ":5");
  EXPECT_EQ(f.skipped, 3);
  ASSERT_EQ(f.skip_reasons.size(), 3u);
  EXPECT_NE(f.skip_reasons[0].find("data.jsonl:1: invalid JSON"), std::string::npos);
  EXPECT_NE(f.skip_reasons[1].find("data.jsonl:3: no assistant turn"), std::string::npos);
  EXPECT_NE(f.skip_reasons[2].find("data.jsonl:6: missing field 'messages'"), std::string::npos);
}

TEST(Jsonl, MissingFile) {
  EXPECT_THROW(jsonl_read("/nonexistent/data.jsonl"), IoError);
}

TEST(Jsonl, NormalizeForRequests) {
  // A generation request ends with a user turn: no assistant turn is needed here.
  const OrderedJson m =
      chat_messages_normalize(OrderedJson::parse(R"([{"role":"user","content":"q"}])"), "req");
  EXPECT_EQ(m.size(), 1u);
  EXPECT_THROW(chat_messages_normalize(OrderedJson::parse(R"([{"role":"x","content":"q"}])"), "req"),
               FormatError);
}

}  // namespace
}  // namespace tune
