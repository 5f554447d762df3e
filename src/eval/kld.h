// Quantization quality as llama.cpp's `llama-perplexity --kl-divergence` measures it: for each scored token the
// KL divergence of the quantized model's next-token distribution from the base model's, the change in the
// probability of the correct token, whether both put the same token on top, and both models' negative
// log-likelihoods; then the summary statistics (mean, median, percentiles, max KLD, top-1 agreement, perplexities).
// Text is cut into chunks of n_ctx tokens and only the second half of each chunk is scored, as llama.cpp does.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "io/json.h"

namespace tune {

struct TokenScore {
  double kld = 0;        // sum over i with log p_base(i) > -16 of p_base(i) (log p_base(i) - log p_model(i))
  double nll_base = 0;   // -log p_base(target)
  double nll_model = 0;  // -log p_model(target)
  double dp = 0;         // p_model(target) - p_base(target)
  bool same_top = false; // argmax agrees
};

// One position: logits (V) of both models and the id that follows.
TokenScore kld_score(std::span<const float> base_logits, std::span<const float> model_logits, int32_t target);

struct KldStats {
  int64_t tokens = 0;
  double mean_kld = 0, mean_kld_err = 0, median_kld = 0, p99_kld = 0, p999_kld = 0, max_kld = 0, min_kld = 0;
  double top1_agreement = 0;
  double ppl_base = 0, ppl_model = 0, ppl_ratio = 0;
  double rms_dp = 0;
  Json to_json() const;  // keys mean_kld, median_kld, p99_kld, p999_kld, max_kld, top1_agreement, ppl_base, ppl_model, ...
};

// Percentiles are linearly interpolated over the sorted values (p in [0, 1]).
double percentile_sorted(const std::vector<double>& sorted, double p);
KldStats kld_stats(const std::vector<TokenScore>& scores);

// Runs both models over `ids` in chunks of n_ctx (the last partial chunk is dropped, as in llama.cpp; at most
// `max_chunks` chunks when it is >= 0) and scores the second half of each chunk. `logits(chunk)` returns
// (n_ctx, V) logits, row-major.
using LogitsFn = std::function<std::vector<float>(std::span<const int32_t>)>;
std::vector<TokenScore> kld_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& base,
                                const LogitsFn& model, int64_t max_chunks = -1);

// kld_run in two steps, so one base pass serves several models (llama-perplexity's --kl-divergence-base): the
// base model's logits at the scored positions of each chunk, then the scores of a model against them.
struct KldBase {
  int64_t n_ctx = 0, vocab = 0;
  std::vector<int32_t> ids;                // the tokens of the chunks used
  std::vector<std::vector<float>> logits;  // per chunk: rows n_ctx/2 .. n_ctx-2, each `vocab` logits
};
KldBase kld_base_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& base,
                     int64_t max_chunks = -1);
std::vector<TokenScore> kld_compare(const KldBase& base, const LogitsFn& model);

// Perplexity of one model with the same chunking and scoring: exp(mean NLL) over the scored tokens.
struct PerplexityResult {
  int64_t tokens = 0;
  double ppl = 0;
};
PerplexityResult perplexity_run(std::span<const int32_t> ids, int64_t n_ctx, int64_t vocab, const LogitsFn& model,
                                int64_t max_chunks = -1);

}  // namespace tune
