// tune generate and tune chat on a small seeded model with the real Qwen3 tokenizer and chat template (a
// model directory, and its Q8_0 GGUF whose metadata carries the vocabulary and the template): a conversation
// piped into tune chat answers every line, keeps the history, /reset forgets it (the same question gets the
// same greedy answer as the first time, and as tune generate --chat gives), /exit and the end of stdin end
// it; bad options are errors naming the option.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "test_util.h"

namespace fs = std::filesystem;
using tune::test::run_tune;
using tune::test::TempDir;
using tune::test::write_text;

namespace {

const std::string kTokDir = std::string(TUNE_SOURCE_DIR) + "/.testdata/qwen3";

class ChatCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTokDir + "/tokenizer.json")) GTEST_SKIP() << "no Qwen3 tokenizer under .testdata/qwen3";
    dir_ = tmp_ / "model";
    auto r = run_tune("init --preset tiny-qwen3 --out " + dir_ + " --seed 1 --std 0.2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(kTokDir + "/" + f, dir_ + "/" + f, fs::copy_options::overwrite_existing);
  }
  // stdout and stderr of `tune chat` with `input` on stdin.
  tune::test::RunResult chat(const std::string& model, const std::string& input,
                             const std::string& extra = "") {
    write_text(tmp_ / "input.txt", input);
    return run_tune("chat --model " + model + " --no-thinking --max-tokens 8 " + extra + " < " +
                    tmp_ / "input.txt");
  }
  TempDir tmp_;
  std::string dir_;
};

// Replies may contain newlines, so outputs are compared whole: tune generate prints the reply and a newline,
// tune chat the same per turn (and the reset note on stderr, unbuffered, between them).
TEST_F(ChatCli, ConversationHistoryResetAndExit) {
  const auto g =
      run_tune("generate --model " + dir_ + " --chat --no-thinking --max-tokens 8 --prompt 'What is 2+2?'");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const std::string a1 = g.output;  // first answer + "\n"
  ASSERT_GT(a1.size(), 1u);

  const auto two = chat(dir_, "What is 2+2?\nAnd 3+3?\n");  // the end of stdin ends the chat
  ASSERT_EQ(two.exit_code, 0) << two.output;
  ASSERT_EQ(two.output.compare(0, a1.size(), a1), 0) << two.output;
  const std::string a2 = two.output.substr(a1.size());
  ASSERT_GT(a2.size(), 1u);

  const auto r = chat(dir_, "What is 2+2?\nAnd 3+3?\n/reset\nWhat is 2+2?\n/exit\nNot read.\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // After /reset the same question gets the first answer again; nothing after /exit is read.
  EXPECT_EQ(r.output, a1 + a2 + "(history cleared)\n" + a1);
}

TEST_F(ChatCli, GgufCarriesVocabularyAndTemplate) {
  const std::string gguf = tmp_ / "m.gguf";
  auto r = run_tune("export --model " + dir_ + " --gguf Q8_0 --out " + gguf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto g =
      run_tune("generate --model " + gguf +
               " --chat --no-thinking --max-tokens 8 --threads 2 --repeat-penalty 1.1 --prompt 'Hi there'");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const auto c = chat(gguf, "Hi there\n", "--repeat-penalty 1.1 --threads 2");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_EQ(c.output, g.output);
}

TEST_F(ChatCli, BadInputIsAnError) {
  auto r = run_tune("generate --model " + dir_ + " --max-tokens 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--prompt"), std::string::npos) << r.output;
  r = run_tune("generate --model " + dir_ + " --prompt hi --temperature -1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--temperature"), std::string::npos) << r.output;
  r = run_tune("generate --model " + dir_ + " --prompt hi --top-q 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--top-q"), std::string::npos) << r.output;
  // A model without a chat template: plain prompts work, chat does not.
  fs::remove(dir_ + "/tokenizer_config.json");
  r = run_tune("generate --model " + dir_ + " --prompt hi --max-tokens 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = chat(dir_, "hi\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("chat template"), std::string::npos) << r.output;
}

}  // namespace
