// KLD statistics: the per-token values against hand computation, zero for identical models, percentiles, and the
// llama.cpp chunking (second half of each chunk scored, the last partial chunk dropped).
#include <cmath>

#include "core/error.h"
#include "eval/kld.h"
#include "test_util.h"

namespace tune {

TEST(Kld, ScoreMatchesDefinition) {
  const std::vector<float> b = {1.0f, 2.0f, 0.5f}, m = {1.5f, 1.0f, 0.0f};
  auto softmax = [](const std::vector<float>& l) {
    std::vector<double> p;
    double z = 0;
    for (float x : l) z += std::exp(double(x));
    for (float x : l) p.push_back(std::exp(double(x)) / z);
    return p;
  };
  const auto pb = softmax(b), pm = softmax(m);
  double kld = 0;
  for (int i = 0; i < 3; ++i) kld += pb[size_t(i)] * std::log(pb[size_t(i)] / pm[size_t(i)]);
  const TokenScore s = kld_score(b, m, 0);
  EXPECT_NEAR(s.kld, kld, 1e-12);
  EXPECT_NEAR(s.nll_base, -std::log(pb[0]), 1e-12);
  EXPECT_NEAR(s.nll_model, -std::log(pm[0]), 1e-12);
  EXPECT_NEAR(s.dp, pm[0] - pb[0], 1e-12);
  EXPECT_FALSE(s.same_top);
  const TokenScore same = kld_score(b, b, 1);
  EXPECT_NEAR(same.kld, 0.0, 1e-15);
  EXPECT_TRUE(same.same_top);
}

TEST(Kld, StatsAndPercentiles) {
  std::vector<TokenScore> v;
  for (int i = 1; i <= 11; ++i) {
    TokenScore s;
    s.kld = double(i);
    s.nll_base = 1.0;
    s.nll_model = 2.0;
    s.same_top = i % 2;
    v.push_back(s);
  }
  const KldStats st = kld_stats(v);
  EXPECT_EQ(st.tokens, 11);
  EXPECT_DOUBLE_EQ(st.mean_kld, 6.0);
  EXPECT_DOUBLE_EQ(st.median_kld, 6.0);
  EXPECT_DOUBLE_EQ(st.max_kld, 11.0);
  EXPECT_NEAR(st.p99_kld, 10.9, 1e-12);  // index 0.99 * 10 = 9.9 between 10 and 11
  EXPECT_NEAR(st.top1_agreement, 6.0 / 11.0, 1e-12);
  EXPECT_NEAR(st.ppl_ratio, std::exp(1.0), 1e-12);
  for (const char* k : {"mean_kld", "median_kld", "p99_kld", "p999_kld", "max_kld", "top1_agreement", "ppl_base",
                        "ppl_model"})
    EXPECT_TRUE(st.to_json().contains(k)) << k;
}

TEST(Kld, ChunkingScoresTheSecondHalf) {
  const int64_t V = 5, ctx = 8;
  std::vector<int32_t> ids(19);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i % V);
  int calls = 0;
  auto logits = [&](std::span<const int32_t> chunk) {
    ++calls;
    EXPECT_EQ(int64_t(chunk.size()), ctx);
    return std::vector<float>(size_t(ctx * V), 0.0f);
  };
  const auto scores = kld_run(ids, ctx, V, logits, logits);
  EXPECT_EQ(calls, 4);                    // 2 chunks (the last 3 tokens are dropped), both models
  EXPECT_EQ(scores.size(), 2u * 3u);      // positions 4, 5, 6 of each chunk
  for (const TokenScore& s : scores) EXPECT_NEAR(s.nll_base, std::log(double(V)), 1e-12);
  EXPECT_THROW(kld_run(std::vector<int32_t>(5, 0), ctx, V, logits, logits), ConfigError);
}

// One base pass serves several models: kld_compare against kld_base_run's logits equals kld_run; --chunks limits
// the chunks of both and of perplexity_run.
TEST(Kld, BaseOnceAndChunkLimit) {
  const int64_t V = 7, ctx = 6;
  std::vector<int32_t> ids(20);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 3) % V);
  auto fn = [&](float scale, int* calls) {
    return [=](std::span<const int32_t> chunk) {
      ++*calls;
      std::vector<float> l(size_t(ctx * V));
      for (size_t i = 0; i < l.size(); ++i) l[i] = scale * float((i * 7 + size_t(chunk[i % size_t(ctx)])) % 11);
      return l;
    };
  };
  int nb = 0, nm = 0, n2 = 0;
  const KldBase base = kld_base_run(ids, ctx, V, fn(0.3f, &nb), 2);
  EXPECT_EQ(nb, 2);
  EXPECT_EQ(base.logits.size(), 2u);
  EXPECT_EQ(base.logits[0].size(), size_t(2 * V));  // rows 3 and 4 of 6
  const auto a = kld_compare(base, fn(0.5f, &nm));
  const auto b = kld_run(ids, ctx, V, fn(0.3f, &n2), fn(0.5f, &n2), 2);
  EXPECT_EQ(nm, 2);
  EXPECT_EQ(n2, 4);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].kld, b[i].kld);
    EXPECT_GT(a[i].kld, 0.0);
    EXPECT_EQ(a[i].nll_model, b[i].nll_model);
  }
  EXPECT_EQ(kld_run(ids, ctx, V, fn(0.3f, &n2), fn(0.5f, &n2)).size(), 3u * 2u);  // all 3 chunks
  EXPECT_EQ(perplexity_run(ids, ctx, V, fn(0.3f, &n2), 1).tokens, 2);
  EXPECT_THROW(kld_base_run(ids, ctx, V, fn(0.3f, &n2), 0), ConfigError);
}

}  // namespace tune
