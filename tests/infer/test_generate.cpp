// Generation over the engine (infer/generate.h) and the sampler (infer/sampler.h): greedy generation follows
// the argmax of the reference forward; a prompt that continues the previous one reuses the cache and gives
// the tokens of a fresh run; stop ids end generation; Qwen3.5 models fall back to the reference forward. The
// sampler's filters keep what they promise and its draws follow the filtered distribution (frequencies within
// 5 standard deviations over 40000 draws).
#include "infer/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "infer/sampler.h"
#include "model/forward.h"
#include "model/model.h"

namespace tune {

namespace {

std::string golden(const std::string& name) {
  return std::string(TUNE_TEST_DATA_DIR) + "/golden/" + name;
}

// Greedy continuation by recomputing the whole sequence with the reference forward.
std::vector<int32_t> reference_greedy(const Model& m, std::vector<int32_t> seq, int64_t n) {
  std::vector<int32_t> out;
  const int64_t V = m.config.vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor l = model_logits(m, seq);
    const float* last = l.f32() + (l.size(0) - 1) * V;
    const int32_t id = int32_t(std::max_element(last, last + V) - last);
    out.push_back(id);
    seq.push_back(id);
  }
  return out;
}

TEST(Generate, GreedyFollowsTheReferenceForward) {
  for (const char* name :
       {"qwen3_gqa4_hd24_untied", "qwen3moe_e8_top2_norm_untied_sharded", "qwen3_5_dense_nv2nk2_tied"}) {
    const Model m = model_load(golden(name));
    const std::vector<int32_t> prompt = {3, 14, 15, 92, 65};
    EngineOptions f32;
    f32.kv_type = DType::F32;
    Generator gen(m, nullptr, f32);
    GenerateOptions o;
    o.max_tokens = 12;
    std::vector<int32_t> streamed;
    const auto out = gen.generate(prompt, o, [&](int32_t id) { streamed.push_back(id); });
    EXPECT_EQ(out, reference_greedy(m, prompt, 12)) << name;
    EXPECT_EQ(streamed, out) << name;
    // The cache holds the prompt and all generated ids but the last.
    EXPECT_EQ(gen.ids().size(), prompt.size() + out.size() - 1) << name;
  }
}

TEST(Generate, ContinuingAPromptReusesTheCache) {
  const Model m = model_load(golden("qwen3_gqa2_odd_untied_sharded"));
  GenerateOptions o;
  o.max_tokens = 6;
  Generator gen(m);
  const std::vector<int32_t> p1 = {7, 8, 9, 10};
  const auto a = gen.generate(p1, o);
  // The next turn: the first conversation, its answer, then new ids (as a chat template renders it).
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), a.begin(), a.end());
  p2.insert(p2.end(), {40, 41, 42});
  const auto b = gen.generate(p2, o);
  Generator fresh(m);
  EXPECT_EQ(b, fresh.generate(p2, o));
  // A prompt that diverges early: only the common prefix is kept.
  const std::vector<int32_t> p3 = {7, 99, 98};
  Generator fresh3(m);
  EXPECT_EQ(gen.generate(p3, o), fresh3.generate(p3, o));
  gen.reset();
  EXPECT_TRUE(gen.ids().empty());
  EXPECT_EQ(gen.generate(p1, o), a);
}

TEST(Generate, StopIdsAndLimits) {
  const Model m = model_load(golden("qwen2_gqa2_untied_sharded"));
  const std::vector<int32_t> prompt = {1, 2, 3};
  Generator gen(m);
  GenerateOptions o;
  o.max_tokens = 5;
  const auto free_run = gen.generate(prompt, o);
  ASSERT_EQ(free_run.size(), 5u);
  o.stop_ids = {free_run[2]};
  const auto stopped = gen.generate(prompt, o);
  const auto first_stop = std::find(free_run.begin(), free_run.end(), free_run[2]) - free_run.begin();
  EXPECT_EQ(stopped, std::vector<int32_t>(free_run.begin(), free_run.begin() + first_stop));
  o.max_tokens = 0;
  EXPECT_TRUE(gen.generate(prompt, o).empty());
  EXPECT_THROW(gen.generate({}, o), ConfigError);
}

std::vector<double> softmax(const std::vector<float>& l, double T) {
  double mx = *std::max_element(l.begin(), l.end()), s = 0;
  std::vector<double> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) s += (p[i] = std::exp((l[i] - mx) / T));
  for (double& v : p) v /= s;
  return p;
}

// Frequencies of 40000 draws against `expect` (zero where a filter removes the token).
void expect_distribution(const SamplerConfig& c, const std::vector<float>& logits,
                         const std::vector<double>& expect, const std::string& what) {
  Sampler s(c);
  const int n = 40000;
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++count[size_t(s.sample(logits, {}))];
  for (size_t i = 0; i < logits.size(); ++i) {
    if (expect[i] == 0) {
      EXPECT_EQ(count[i], 0) << what << " token " << i;
      continue;
    }
    const double sd = std::sqrt(n * expect[i] * (1 - expect[i]));
    EXPECT_NEAR(count[i], n * expect[i], 5 * sd + 1) << what << " token " << i;
  }
}

TEST(Sampler, FiltersAndDistribution) {
  const std::vector<float> l = {1.0f, 3.0f, 2.5f, -1.0f, 2.0f, 0.5f};
  SamplerConfig c;
  c.seed = 3;
  EXPECT_EQ(Sampler(c).sample(l, {}), 1);  // temperature 0: argmax
  c.repetition_penalty = 2.0;              // positive logits of seen tokens are divided: 3 -> 1.5
  EXPECT_EQ(Sampler(c).sample(l, std::vector<int32_t>{1}), 2);
  c.repetition_penalty = 1.0;
  c.temperature = 0.8;
  expect_distribution(c, l, softmax(l, 0.8), "temperature");
  c.top_k = 3;  // tokens 1, 2, 4
  {
    const std::vector<float> kept = {l[1], l[2], l[4]};
    const auto p = softmax(kept, 0.8);
    expect_distribution(c, l, {0, p[0], p[1], 0, p[2], 0}, "top-k");
  }
  c.top_k = 0;
  c.top_p = 0.6;  // sorted probabilities at T = 0.8: 0.51, 0.27, 0.15, ... -> the first two reach 0.6
  {
    const auto full = softmax(l, 0.8);
    ASSERT_LT(full[1], 0.6);
    ASSERT_GE(full[1] + full[2], 0.6);
    const double z = full[1] + full[2];
    expect_distribution(c, l, {0, full[1] / z, full[2] / z, 0, 0, 0}, "top-p");
  }
  c.top_p = 1.0;
  c.min_p = 0.25;  // p >= 0.25 p_max: exp((l - 3) / 0.8) = 1, 0.54, 0.29 for tokens 1, 2, 4; 0.08 for token 0
  {
    const std::vector<float> kept = {l[1], l[2], l[4]};
    const auto p = softmax(kept, 0.8);
    expect_distribution(c, l, {0, p[0], p[1], 0, p[2], 0}, "min-p");
  }
  // Seeded: the same seed gives the same draws.
  c.min_p = 0.0;
  Sampler a(c), b(c);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(l, {}), b.sample(l, {}));
  // A large vocabulary with top-p: only the needed prefix is sorted; the result is one of the top tokens.
  std::vector<float> big(151936);
  for (size_t i = 0; i < big.size(); ++i) big[i] = float(std::sin(double(i) * 0.37) * 4.0);
  c.top_p = 0.05;
  c.temperature = 0.5;
  Sampler sb(c);
  const float top = *std::max_element(big.begin(), big.end());
  for (int i = 0; i < 20; ++i) EXPECT_GT(big[size_t(sb.sample(big, {}))], top - 1.0f);
}

}  // namespace

}  // namespace tune
