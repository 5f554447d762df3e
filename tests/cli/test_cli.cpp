// The CLI surface: `tune init/info/logits` work together, and bad input gives a clear message and exit code 1.
#include <filesystem>

#include "io/json.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace tune {

namespace {

const char* kTinyConfig = R"({"model_type":"qwen3","vocab_size":64,"hidden_size":16,"num_hidden_layers":2,
  "num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":24,"tie_word_embeddings":true})";

void expect_failure(const std::string& args, const std::string& needle) {
  const test::RunResult r = test::run_tune(args);
  EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
}

}  // namespace

TEST(Cli, InitInfoLogits) {
  test::TempDir dir;
  test::write_text(dir / "cfg.json", kTinyConfig);
  const std::string model = dir / "model";
  ASSERT_EQ(test::run_tune("init --config " + (dir / "cfg.json") + " --out " + model + " --seed 3").exit_code, 0);
  const test::RunResult info = test::run_tune("info " + model);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("architecture:   qwen3"), std::string::npos) << info.output;
  // 64*16 embedding + 2 layers * (q 16*16 + k,v 2*8*16 + o 16*16 + qk-norms 2*8 + ffn 3*16*24 + norms 2*16)
  // + 16 final norm; the head is tied.
  EXPECT_NE(info.output.find("parameters:     4976 "), std::string::npos) << info.output;

  test::write_text(dir / "ids.txt", "1 2\n3,4\n");
  const std::string out = dir / "logits.safetensors";
  const test::RunResult lg = test::run_tune("logits --model " + model + " --ids @" + (dir / "ids.txt") + " --out " + out);
  ASSERT_EQ(lg.exit_code, 0) << lg.output;
  const SafetensorsFile f(out);
  EXPECT_EQ(f.entries().at("logits").shape, Shape({4, 64}));
  EXPECT_EQ(f.entries().at("logits").dtype, DType::F32);
}

TEST(Cli, BadInputIsAClearError) {
  test::TempDir dir;
  test::write_text(dir / "cfg.json", kTinyConfig);
  const std::string model = dir / "model";
  ASSERT_EQ(test::run_tune("init --config " + (dir / "cfg.json") + " --out " + model).exit_code, 0);
  const std::string cfg = model + "/config.json";
  const Json good = json_load_file(cfg);

  expect_failure("logits --model " + model + " --ids \"1 x\"", "'x' is not a token id");
  expect_failure("logits --model " + model + " --ids \"1 64\"", "outside the vocabulary");
  expect_failure("logits --model " + model + " --idz 1", "unknown option --idz");
  expect_failure("info " + (dir / "nowhere"), "config.json: not found");
  expect_failure("frobnicate", "unknown verb");

  Json j = good;
  j["model_type"] = "gpt2";
  json_save_file(cfg, j);
  expect_failure("info " + model, "'model_type' is 'gpt2'");
  j = good;
  j.erase("num_hidden_layers");
  json_save_file(cfg, j);
  expect_failure("info " + model, "'num_hidden_layers' is required");
  j = good;
  j["hidden_size"] = 32;
  json_save_file(cfg, j);
  expect_failure("logits --model " + model + " --ids 1", "config.json implies");
  json_save_file(cfg, good);

  const std::string st = model + "/model.safetensors";
  const std::string bytes = read_file(st);
  test::write_text(st, bytes.substr(0, bytes.size() / 2));
  expect_failure("info " + model, "model.safetensors");
  expect_failure("logits --model " + model + " --ids 1", "truncated");
}

}  // namespace tune
