// Tests of rendering records into token ids and loss labels with the real Qwen3 / Qwen2.5 tokenizers and chat
// templates: only assistant turns (their content, <think> block, tool calls, <|im_end|> and the newline after
// it) are trained; boundary tokens; the NFC fallback; text and tokens records; the CLI verbs. Real files:
// .testdata/ (bash scripts/fetch_testdata.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/example.h"
#include "test_util.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kTestData = TUNE_SOURCE_DIR "/.testdata";

#define REQUIRE_TESTDATA(path) \
  ASSERT_TRUE(fs::exists(path)) << (path) << " is missing: run `bash scripts/fetch_testdata.sh` first"

struct Model {
  Tokenizer tokenizer;
  ChatTemplate chat_template;
};

const Model& qwen3() {
  static const Model m{Tokenizer::from_dir(kTestData + "/qwen3"),
                       ChatTemplate::from_model_dir(kTestData + "/qwen3")};
  return m;
}
const Model& qwen2_5() {
  static const Model m{Tokenizer::from_dir(kTestData + "/qwen2_5"),
                       ChatTemplate::from_model_dir(kTestData + "/qwen2_5")};
  return m;
}

class Qwen3Example : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json"); }
};

Record chat(const std::string& json, DataFormat format = DataFormat::kMessages) {
  return record_parse(OrderedJson::parse(json), format, "t.jsonl:7");
}

// The decoded runs of trained (or untrained) tokens, in order.
std::vector<std::string> runs(const Example& ex, const Tokenizer& tok, bool trained) {
  std::vector<std::string> out;
  for (size_t i = 0; i < ex.ids.size();) {
    const bool t = ex.labels[i] != kIgnoreIndex;
    size_t j = i;
    while (j < ex.ids.size() && (ex.labels[j] != kIgnoreIndex) == t) ++j;
    if (t == trained) out.push_back(tok.decode(std::vector<int32_t>(ex.ids.begin() + i, ex.ids.begin() + j)));
    i = j;
  }
  return out;
}

void expect_labels_are_ids_or_ignored(const Example& ex) {
  ASSERT_EQ(ex.ids.size(), ex.labels.size());
  for (size_t i = 0; i < ex.ids.size(); ++i)
    if (ex.labels[i] != kIgnoreIndex) {
      EXPECT_EQ(ex.labels[i], ex.ids[i]) << i;
    }
}

TEST_F(Qwen3Example, OnlyTheAssistantTurnIsTrained) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there"}]})");
  const RenderedChat rc = chat_render(r, m.chat_template, {});
  EXPECT_EQ(rc.text,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello "
            "there<|im_end|>\n");
  ASSERT_EQ(rc.spans.size(), 1u);
  EXPECT_EQ(rc.text.substr(rc.spans[0].begin), "<think>\n\n</think>\n\nHello there<|im_end|>\n");

  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  EXPECT_EQ(ex.ids, m.tokenizer.encode(rc.text));
  expect_labels_are_ids_or_ignored(ex);
  EXPECT_EQ(runs(ex, m.tokenizer, true),
            (std::vector<std::string>{"<think>\n\n</think>\n\nHello there<|im_end|>\n"}));
  EXPECT_EQ(runs(ex, m.tokenizer, false),
            (std::vector<std::string>{"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"}));
  // The closing <|im_end|> and the "\n" after it are trained; the header's "\n" is not.
  const int32_t im_end = m.tokenizer.token_id("<|im_end|>");
  const size_t n = ex.ids.size();
  EXPECT_EQ(ex.ids[n - 2], im_end);
  EXPECT_EQ(ex.labels[n - 2], im_end);
  EXPECT_EQ(ex.ids[n - 1], 198);  // "\n"
  EXPECT_EQ(ex.labels[n - 1], 198);
  const size_t first =
      std::find_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l != kIgnoreIndex; }) -
      ex.labels.begin();
  EXPECT_EQ(ex.ids[first], m.tokenizer.token_id("<think>"));
  EXPECT_EQ(ex.ids[first - 1], 198);
  EXPECT_EQ(ex.ids[first - 2], m.tokenizer.token_id("assistant"));
}

TEST_F(Qwen3Example, MultiTurnSystemAndUserTurnsAreNotTrained) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},)"
           R"({"role":"assistant","content":"One"},{"role":"user","content":"Again"},)"
           R"({"role":"assistant","content":"Two"}]})");
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  expect_labels_are_ids_or_ignored(ex);
  EXPECT_EQ(runs(ex, m.tokenizer, true),
            (std::vector<std::string>{"One<|im_end|>\n", "<think>\n\n</think>\n\nTwo<|im_end|>\n"}));
  EXPECT_EQ(
      runs(ex, m.tokenizer, false),
      (std::vector<std::string>{"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                "<|im_start|>assistant\n",
                                "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n"}));
}

// Content that starts with "\n\n" merges with the header's "\n" into one token "\n\n\n": it carries response
// bytes, so it is trained; "assistant" before it is not.
TEST_F(Qwen3Example, BoundaryTokenThatStraddlesTheHeaderIsTrained) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"\n\nFirst"},)"
           R"({"role":"user","content":"Again"},{"role":"assistant","content":"  Second"}]})");
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  expect_labels_are_ids_or_ignored(ex);
  const int32_t nnn = m.tokenizer.encode("\n\n\n").at(0);
  ASSERT_EQ(m.tokenizer.encode("\n\n\n").size(), 1u);
  size_t i = std::find(ex.ids.begin(), ex.ids.end(), nnn) - ex.ids.begin();
  ASSERT_LT(i, ex.ids.size());
  EXPECT_EQ(ex.ids[i - 1], m.tokenizer.token_id("assistant"));
  EXPECT_EQ(ex.labels[i - 1], kIgnoreIndex);
  EXPECT_EQ(ex.labels[i], nnn);
  // Leading spaces after the header start a new token: the trained run is exactly the content.
  EXPECT_EQ(
      runs(ex, m.tokenizer, true),
      (std::vector<std::string>{"\n\n\nFirst<|im_end|>\n", "<think>\n\n</think>\n\n  Second<|im_end|>\n"}));
}

TEST_F(Qwen3Example, LeadingSpacesInAnEarlierTurn) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"  First"},)"
           R"({"role":"user","content":"Again"},{"role":"assistant","content":" Second "}]})");
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  EXPECT_EQ(runs(ex, m.tokenizer, true),
            (std::vector<std::string>{"  First<|im_end|>\n", "<think>\n\n</think>\n\n Second <|im_end|>\n"}));
  EXPECT_EQ(runs(ex, m.tokenizer, false).at(0), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// The tokenizer normalizes to NFC, so decoded tokens no longer spell the rendered text: the example is
// tokenized segment by segment at the span boundaries.
TEST_F(Qwen3Example, NfcFallsBackToSegments) {
  const Model& m = qwen3();
  ASSERT_TRUE(m.tokenizer.nfc());
  const Record r = chat(R"({"messages":[{"role":"user","content":"cafe\u0301?"},)"
                        R"({"role":"assistant","content":"cafe\u0301 au lait"}]})");
  const RenderedChat rc = chat_render(r, m.chat_template, {});
  ASSERT_NE(m.tokenizer.decode(m.tokenizer.encode(rc.text)), rc.text);
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  std::vector<int32_t> expected = m.tokenizer.encode(rc.text.substr(0, rc.spans[0].begin));
  const std::vector<int32_t> span = m.tokenizer.encode(rc.text.substr(rc.spans[0].begin));
  expected.insert(expected.end(), span.begin(), span.end());
  EXPECT_EQ(ex.ids, expected);
  EXPECT_EQ(runs(ex, m.tokenizer, true),
            (std::vector<std::string>{"<think>\n\n</think>\n\ncaf\u00e9 au lait<|im_end|>\n"}));
  EXPECT_EQ(runs(ex, m.tokenizer, false),
            (std::vector<std::string>{"<|im_start|>user\ncaf\u00e9?<|im_end|>\n<|im_start|>assistant\n"}));
}

TEST_F(Qwen3Example, ToolCallsAreTrainedToolResultsAreNot) {
  const Model& m = qwen3();
  const Record r = chat(
      R"({"messages":[{"role":"user","content":"Weather in Paris?"},)"
      R"({"role":"assistant","content":"","tool_calls":[{"type":"function",)"
      R"("function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},)"
      R"({"role":"tool","content":"18C"},{"role":"assistant","content":"18C and sunny."}],)"
      R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]})");
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  expect_labels_are_ids_or_ignored(ex);
  const std::vector<std::string> trained = runs(ex, m.tokenizer, true);
  ASSERT_EQ(trained.size(), 2u);
  EXPECT_EQ(trained[0],
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
            "\"Paris\"}}\n</tool_call><|im_end|>\n");
  EXPECT_EQ(trained[1], "<think>\n\n</think>\n\n18C and sunny.<|im_end|>\n");
  const std::vector<std::string> untrained = runs(ex, m.tokenizer, false);
  ASSERT_EQ(untrained.size(), 2u);
  EXPECT_NE(untrained[0].find("\"name\": \"get_weather\""), std::string::npos);  // the tool schema, in system
  EXPECT_EQ(untrained[1],
            "<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
}

TEST_F(Qwen3Example, TrainOnPrompt) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})");
  ExampleOptions o;
  o.train_on_prompt = true;
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, o);
  EXPECT_EQ(ex.labels, ex.ids);
  EXPECT_EQ(ex.ids, m.tokenizer.encode(chat_render(r, m.chat_template, o).text));
}

TEST_F(Qwen3Example, AlpacaAndShareGpt) {
  const Model& m = qwen3();
  const Example a = example_render(
      chat(R"({"instruction":"Translate","input":"cat","output":"chat"})", DataFormat::kAlpaca), m.tokenizer,
      &m.chat_template, {});
  EXPECT_EQ(
      runs(a, m.tokenizer, false),
      (std::vector<std::string>{"<|im_start|>user\nTranslate\n\ncat<|im_end|>\n<|im_start|>assistant\n"}));
  EXPECT_EQ(runs(a, m.tokenizer, true),
            (std::vector<std::string>{"<think>\n\n</think>\n\nchat<|im_end|>\n"}));
  const Example s =
      example_render(chat(R"({"conversations":[{"from":"human","value":"Q"},{"from":"gpt","value":"A"}]})",
                          DataFormat::kShareGpt),
                     m.tokenizer, &m.chat_template, {});
  EXPECT_EQ(runs(s, m.tokenizer, true), (std::vector<std::string>{"<think>\n\n</think>\n\nA<|im_end|>\n"}));
}

TEST_F(Qwen3Example, TextGetsEosAndIsAllTrained) {
  const Model& m = qwen3();
  const Record r = record_parse(OrderedJson::parse(R"({"text":"Hello, world!"})"), DataFormat::kText, "t:1");
  const Example ex = example_render(r, m.tokenizer, nullptr, {});
  std::vector<int32_t> expected = {9707, 11, 1879, 0};  // "Hello, world!"
  ASSERT_GE(m.tokenizer.eos_id(), 0);
  expected.push_back(m.tokenizer.eos_id());
  EXPECT_EQ(ex.ids, expected);
  EXPECT_EQ(ex.labels, expected);
}

TEST_F(Qwen3Example, TokensAreCheckedAgainstTheVocabulary) {
  const Model& m = qwen3();
  const Record ok = record_parse(OrderedJson::parse(R"({"input_ids":[1,2,3],"labels":[-100,2,3]})"),
                                 DataFormat::kTokens, "t:1");
  const Example ex = example_render(ok, m.tokenizer, nullptr, {});
  EXPECT_EQ(ex.ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ex.labels, (std::vector<int32_t>{-100, 2, 3}));
  const Record bad =
      record_parse(OrderedJson::parse(R"({"input_ids":[1,999999]})"), DataFormat::kTokens, "t:9");
  try {
    example_render(bad, m.tokenizer, nullptr, {});
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("t:9: input_ids[1] = 999999 is outside the vocabulary"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(Qwen3Example, ErrorsNameTheRecord) {
  const Model& m = qwen3();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}]})");
  // No chat template for a chat record.
  EXPECT_THROW(example_render(r, m.tokenizer, nullptr, {}), FormatError);
  // A template that is not ChatML: response-only loss cannot find the turns; train_on_prompt still works.
  const ChatTemplate plain("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
  try {
    example_render(r, m.tokenizer, &plain, {});
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("t.jsonl:7: the chat template rendered 0"), std::string::npos)
        << e.what();
    EXPECT_NE(e.hint().find("ChatML"), std::string::npos);
  }
  ExampleOptions all;
  all.train_on_prompt = true;
  EXPECT_EQ(example_render(r, m.tokenizer, &plain, all).ids, m.tokenizer.encode("user: Hi\nassistant: A\n"));
  // A user turn that holds the assistant marker would make a span of user text: an error, not silent
  // mislabelling.
  const Record marker = chat(R"({"messages":[{"role":"user","content":"x<|im_start|>assistant\ny"},)"
                             R"({"role":"assistant","content":"A"}]})");
  EXPECT_THROW(example_render(marker, m.tokenizer, &m.chat_template, {}), FormatError);
  // The template's own exceptions carry the record's source.
  const ChatTemplate raising("{{ raise_exception('no tools here') }}");
  try {
    example_render(r, m.tokenizer, &raising, {});
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("t.jsonl:7: chat template:"), std::string::npos) << e.what();
  }
}

TEST(Qwen25Example, DefaultSystemPromptIsNotTrained) {
  REQUIRE_TESTDATA(kTestData + "/qwen2_5/tokenizer.json");
  const Model& m = qwen2_5();
  const Record r =
      chat(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})");
  const Example ex = example_render(r, m.tokenizer, &m.chat_template, {});
  EXPECT_EQ(runs(ex, m.tokenizer, true), (std::vector<std::string>{"Hello<|im_end|>\n"}));
  const std::vector<std::string> untrained = runs(ex, m.tokenizer, false);
  ASSERT_EQ(untrained.size(), 1u);
  EXPECT_EQ(untrained[0].rfind("<|im_start|>system\nYou are Qwen", 0), 0u) << untrained[0];
}

TEST_F(Qwen3Example, CliTokenize) {
  const std::string model = kTestData + "/qwen3";
  test::RunResult r = test::run_tune("tokenize --model " + model + " --text 'Hello, world!'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "9707 11 1879 0\n");
  test::TempDir dir;
  test::write_text(dir / "req.json", R"({"messages":[{"role":"user","content":"Hi"}]})");
  r = test::run_tune("tokenize --model " + model + " --chat " + dir / "req.json" +
                     " --generation-prompt --no-thinking");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
  EXPECT_EQ(r.output.substr(0, text.size()), text);
  std::string ids;
  for (int32_t id : qwen3().tokenizer.encode(text)) ids += (ids.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(r.output.substr(text.size()), ids + "\n");
  r = test::run_tune("tokenize --model " + model);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("give one of --text, --file or --chat"), std::string::npos) << r.output;
}

TEST_F(Qwen3Example, CliDataPreview) {
  test::TempDir dir;
  test::write_text(dir / "d.jsonl",
                   R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]})"
                   "\n"
                   R"({"messages":[{"role":"user","content":"Hi"}]})"
                   "\n");
  const std::string args = "data preview --model " + kTestData + "/qwen3 --data " + dir / "d.jsonl";
  test::RunResult r = test::run_tune(args + " --skip-bad --limit 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("<|im_start|>assistant\n[[<think>\n\n</think>\n\nYo<|im_end|>\n]]"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("records:    1 (1 skipped)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("d.jsonl:2: no assistant turn"), std::string::npos) << r.output;
  r = test::run_tune(args);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("d.jsonl:2: no assistant turn"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tune
