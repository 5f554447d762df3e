// KL divergence and perplexity statistics (definitions of llama.cpp's tools/perplexity).
#include "eval/kld.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tune {

namespace {
// log-softmax of logits into out (double).
void log_softmax(std::span<const float> l, std::vector<double>& out) {
  out.resize(l.size());
  double mx = -INFINITY, sum = 0;
  for (float x : l) mx = std::max(mx, double(x));
  for (float x : l) sum += std::exp(double(x) - mx);
  const double lse = mx + std::log(sum);
  for (size_t i = 0; i < l.size(); ++i) out[i] = double(l[i]) - lse;
}
}  // namespace

TokenScore kld_score(std::span<const float> base_logits, std::span<const float> model_logits, int32_t target) {
  TUNE_CHECK(base_logits.size() == model_logits.size() && target >= 0 && size_t(target) < base_logits.size())
      << "kld_score: mismatched vocabularies or target";
  thread_local std::vector<double> lb, lm;
  log_softmax(base_logits, lb);
  log_softmax(model_logits, lm);
  TokenScore s;
  size_t top_b = 0, top_m = 0;
  for (size_t i = 0; i < lb.size(); ++i) {
    if (lb[i] > -16.0) s.kld += std::exp(lb[i]) * (lb[i] - lm[i]);
    if (lb[i] > lb[top_b]) top_b = i;
    if (lm[i] > lm[top_m]) top_m = i;
  }
  s.nll_base = -lb[size_t(target)];
  s.nll_model = -lm[size_t(target)];
  s.dp = std::exp(lm[size_t(target)]) - std::exp(lb[size_t(target)]);
  s.same_top = top_b == top_m;
  return s;
}

double percentile_sorted(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const double x = p * double(v.size() - 1);
  const size_t i = size_t(x);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (x - double(i)) * (v[i + 1] - v[i]);
}

KldStats kld_stats(const std::vector<TokenScore>& scores) {
  KldStats st;
  const size_t n = scores.size();
  st.tokens = int64_t(n);
  if (n == 0) return st;
  std::vector<double> k;
  double sum = 0, sum2 = 0, nb = 0, nm = 0, dp2 = 0, same = 0;
  for (const TokenScore& s : scores) {
    k.push_back(s.kld);
    sum += s.kld;
    sum2 += s.kld * s.kld;
    nb += s.nll_base;
    nm += s.nll_model;
    dp2 += s.dp * s.dp;
    same += s.same_top;
  }
  std::sort(k.begin(), k.end());
  st.mean_kld = sum / double(n);
  // llama.cpp: sigma = sqrt((sum2/n - mean^2) / (n - 1)), reported as 0 for n <= 10.
  st.mean_kld_err = n > 10 ? std::sqrt(std::max(0.0, sum2 / double(n) - st.mean_kld * st.mean_kld) / double(n - 1)) : 0;
  st.median_kld = n % 2 ? k[n / 2] : 0.5 * (k[n / 2 - 1] + k[n / 2]);
  st.p99_kld = percentile_sorted(k, 0.99);
  st.p999_kld = percentile_sorted(k, 0.999);
  st.max_kld = k.back();
  st.min_kld = k.front();
  st.top1_agreement = same / double(n);
  st.ppl_base = std::exp(nb / double(n));
  st.ppl_model = std::exp(nm / double(n));
  st.ppl_ratio = st.ppl_model / st.ppl_base;
  st.rms_dp = std::sqrt(dp2 / double(n));
  return st;
}

Json KldStats::to_json() const {
  return {{"tokens", tokens},         {"mean_kld", mean_kld},   {"mean_kld_err", mean_kld_err},
          {"median_kld", median_kld}, {"p99_kld", p99_kld},     {"p999_kld", p999_kld},
          {"max_kld", max_kld},       {"min_kld", min_kld},     {"top1_agreement", top1_agreement},
          {"ppl_base", ppl_base},     {"ppl_model", ppl_model}, {"ppl_ratio", ppl_ratio},
          {"rms_dp", rms_dp}};
}

namespace {
int64_t chunk_count(std::span<const int32_t> ids, int64_t n_ctx, int64_t max_chunks) {
  if (n_ctx < 4) throw ConfigError("--ctx must be at least 4, got " + std::to_string(n_ctx));
  const int64_t chunks = int64_t(ids.size()) / n_ctx;
  if (chunks == 0) {
    throw ConfigError("the text has " + std::to_string(ids.size()) + " tokens, fewer than one chunk of --ctx " +
                          std::to_string(n_ctx),
                      "use a longer text or a smaller --ctx");
  }
  if (max_chunks == 0) throw ConfigError("--chunks must be at least 1");
  return max_chunks > 0 ? std::min(chunks, max_chunks) : chunks;
}
}  // namespace

PerplexityResult perplexity_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& model,
                                int64_t max_chunks) {
  const int64_t chunks = chunk_count(ids, n_ctx, max_chunks);
  double nll = 0;
  PerplexityResult r;
  std::vector<double> lp;
  for (int64_t c = 0; c < chunks; ++c) {
    const std::span<const int32_t> chunk = ids.subspan(size_t(c * n_ctx), size_t(n_ctx));
    const std::vector<float> l = model(chunk);
    TUNE_CHECK(int64_t(l.size()) == n_ctx * vocab) << "perplexity_run: logits shape";
    for (int64_t j = n_ctx / 2; j < n_ctx - 1; ++j) {
      log_softmax({l.data() + j * vocab, size_t(vocab)}, lp);
      nll -= lp[size_t(chunk[size_t(j + 1)])];
      ++r.tokens;
    }
  }
  r.ppl = std::exp(nll / double(r.tokens));
  return r;
}

KldBase kld_base_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& base,
                     int64_t max_chunks) {
  const int64_t chunks = chunk_count(ids, n_ctx, max_chunks);
  KldBase b;
  b.n_ctx = n_ctx;
  b.vocab = vocab;
  b.ids.assign(ids.begin(), ids.begin() + chunks * n_ctx);
  const int64_t first = n_ctx / 2, rows = n_ctx - 1 - first;
  for (int64_t c = 0; c < chunks; ++c) {
    const std::vector<float> l = base(ids.subspan(size_t(c * n_ctx), size_t(n_ctx)));
    TUNE_CHECK(int64_t(l.size()) == n_ctx * vocab) << "kld_base_run: logits shape";
    b.logits.emplace_back(l.begin() + first * vocab, l.begin() + (first + rows) * vocab);
  }
  return b;
}

std::vector<TokenScore> kld_compare(const KldBase& b, const LogitsFn& model) {
  const int64_t n_ctx = b.n_ctx, vocab = b.vocab, first = n_ctx / 2;
  std::vector<TokenScore> out;
  for (size_t c = 0; c < b.logits.size(); ++c) {
    const std::span<const int32_t> chunk(b.ids.data() + c * size_t(n_ctx), size_t(n_ctx));
    const std::vector<float> lm = model(chunk);
    TUNE_CHECK(int64_t(lm.size()) == n_ctx * vocab) << "kld_compare: logits shape";
    // Position j predicts token j + 1; the first half of the chunk is context only.
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      out.push_back(kld_score({b.logits[c].data() + (j - first) * vocab, size_t(vocab)},
                              {lm.data() + j * vocab, size_t(vocab)}, chunk[size_t(j + 1)]));
    }
  }
  return out;
}

std::vector<TokenScore> kld_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& base,
                                const LogitsFn& model, int64_t max_chunks) {
  return kld_compare(kld_base_run(ids, n_ctx, vocab, base, max_chunks), model);
}

}  // namespace tune
