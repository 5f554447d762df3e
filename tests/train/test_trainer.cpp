// The training loop: exact resume (10 steps == 5 + stop + resume + 5, bit for bit), the loss of a step is the
// mean over all its trained tokens, schedules, and non-finite losses stop or skip as asked.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "io/safetensors.h"
#include "ops/cross_entropy.h"
#include "train/trainer.h"
#include "test_util.h"

namespace tune {

namespace {

ModelConfig tiny() {
  return model_config_from_json(Json::parse(R"({"model_type":"qwen3","vocab_size":30,"hidden_size":16,
    "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"intermediate_size":20,
    "tie_word_embeddings":true})"),
                                "test");
}

// n examples of 4..8 tokens whose first two tokens are an untrained prompt, one example per row.
Dataset rows(int n, uint64_t seed) {
  Rng rng(seed);
  Dataset d;
  d.seq_len = 8;
  for (int i = 0; i < n; ++i) {
    Example e;
    const int T = 4 + int(rng.below(5));
    for (int t = 0; t < T; ++t) {
      e.ids.push_back(int32_t(rng.below(30)));
      e.labels.push_back(t < 2 ? kIgnoreIndex : e.ids.back());
    }
    d.examples.push_back(e);
    d.rows.push_back({i});
  }
  return d;
}

TrainOptions options(const std::string& out) {
  TrainOptions o;
  o.out = out;
  o.lr = 1e-2;
  o.schedule = ScheduleKind::Cosine;
  o.warmup_steps = 2;
  o.steps = 10;
  o.batch_size = 2;
  o.grad_accum = 2;
  o.optimizer.weight_decay = 0.01;
  o.seed = 7;
  o.save_every = 5;
  o.quiet = true;
  return o;
}

LoraAdapter adapter_for(const Model& m) {
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.dropout = 0.1;  // exercises the per-step dropout RNG across the resume
  return LoraAdapter::init(m.config, lc, 3);
}

std::string bytes(const std::string& path) { return read_file(path); }

// The log's lines without the timing field.
std::vector<Json> log_lines(const std::string& path) {
  std::vector<Json> v;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    j.erase("tokens_per_s");
    v.push_back(j);
  }
  return v;
}

}  // namespace

TEST(Trainer, ResumeIsBitIdentical) {
  const Model m = model_random(tiny(), 1, 0.3f);
  const Dataset data = rows(7, 2);  // 7 rows, 4 per step: epochs wrap mid-step
  test::TempDir a, b;

  LoraAdapter straight = adapter_for(m);
  EXPECT_EQ(train_run(m, straight, data, options(a.str())), 10);

  LoraAdapter first = adapter_for(m);
  TrainOptions o = options(b.str());
  o.stop_after = 5;
  EXPECT_EQ(train_run(m, first, data, o), 5);
  ASSERT_TRUE(std::filesystem::exists(b / "checkpoint-5/trainer_state.json"));
  EXPECT_FALSE(std::filesystem::exists(b / "adapter"));
  LoraAdapter resumed = adapter_for(m);  // a fresh process: the state comes from the checkpoint only
  o.stop_after = 0;
  o.resume = b / "checkpoint-5";
  EXPECT_EQ(train_run(m, resumed, data, o), 10);

  EXPECT_EQ(bytes(a / "adapter/adapter_model.safetensors"), bytes(b / "adapter/adapter_model.safetensors"));
  EXPECT_EQ(bytes(a / "checkpoint-10/optimizer.safetensors"), bytes(b / "checkpoint-10/optimizer.safetensors"));
  // The log of the resumed run has each step once, with the same losses.
  EXPECT_EQ(log_lines(a / "train_log.jsonl"), log_lines(b / "train_log.jsonl"));
  EXPECT_EQ(log_lines(a / "train_log.jsonl").size(), 10u);
}

TEST(Trainer, StepLossIsTheMeanOverAllTrainedTokens) {
  const Model m = model_random(tiny(), 4, 0.3f);
  const Dataset data = rows(3, 5);
  std::vector<Row> step_rows;
  LoraAdapter ad = adapter_for(m);
  ad.config.dropout = 0;
  double sum = 0;
  int64_t trained = 0;
  for (int64_t i = 0; i < data.num_rows(); ++i) {
    const Example& e = data.examples[size_t(i)];
    const RowLoss l = model_loss_row(m, &ad, TokenRow{e.ids, {}, {}}, example_targets(e), 0.0f, nullptr);
    step_rows.push_back(data.row(i));
    sum += l.loss_sum;
    trained += l.trained;
  }
  Optimizer opt(OptimizerConfig{}, ad);
  const StepResult s = train_step(m, ad, opt, step_rows, 0.0, 0.0, 0);
  EXPECT_EQ(s.trained, trained);
  EXPECT_NEAR(s.loss, sum / double(trained), 1e-6);
  EXPECT_EQ(opt.steps(), 1);
}

TEST(Trainer, Schedules) {
  EXPECT_DOUBLE_EQ(schedule_lr(ScheduleKind::Constant, 1.0, 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(schedule_lr(ScheduleKind::Constant, 1.0, 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(schedule_lr(ScheduleKind::Constant, 1.0, 5, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(schedule_lr(ScheduleKind::Linear, 1.0, 6, 2, 10), 0.5);
  EXPECT_NEAR(schedule_lr(ScheduleKind::Cosine, 1.0, 6, 2, 10), 0.5, 1e-12);
  EXPECT_NEAR(schedule_lr(ScheduleKind::Cosine, 1.0, 10, 2, 10), 0.0, 1e-12);
  EXPECT_THROW(schedule_parse("step"), ConfigError);
}

TEST(Trainer, NonFiniteLossStopsOrSkips) {
  Model m = model_random(tiny(), 6, 0.3f);
  m.weights.layers[1].ffn_down.f32()[0] = std::numeric_limits<float>::quiet_NaN();
  const Dataset data = rows(4, 7);
  test::TempDir dir;
  LoraAdapter ad = adapter_for(m);
  try {
    train_run(m, ad, data, options(dir.str()));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--skip-nonfinite"), std::string::npos) << e.what();
  }
  LoraAdapter skip = adapter_for(m);
  const Tensor a0 = skip.layers[0][0].A.clone();
  TrainOptions o = options(dir.str());
  o.skip_nonfinite = true;
  EXPECT_EQ(train_run(m, skip, data, o), 10);
  EXPECT_EQ(std::memcmp(a0.data(), skip.layers[0][0].A.data(), a0.nbytes()), 0) << "a skipped step changed the adapter";
}

}  // namespace tune
