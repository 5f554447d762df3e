// Sampling: filters applied in the order transformers' generate uses (penalty, temperature, top-k, top-p, min-p).
#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>
#include <vector>

#include "core/error.h"

namespace tune {

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int64_t V = int64_t(logits.size());
  std::vector<double> l(logits.begin(), logits.end());
  if (config_.repetition_penalty != 1.0) {
    const std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen)
      if (id >= 0 && id < V) l[size_t(id)] = l[size_t(id)] > 0 ? l[size_t(id)] / config_.repetition_penalty
                                                                : l[size_t(id)] * config_.repetition_penalty;
  }
  if (config_.temperature <= 0.0) return int32_t(std::max_element(l.begin(), l.end()) - l.begin());

  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[size_t(a)] > l[size_t(b)]; });
  int64_t keep = V;
  if (config_.top_k > 0) keep = std::min(keep, config_.top_k);
  std::vector<double> p(static_cast<size_t>(keep));
  const double mx = l[size_t(order[0])] / config_.temperature;
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += (p[size_t(i)] = std::exp(l[size_t(order[size_t(i)])] / config_.temperature - mx));
  for (double& x : p) x /= sum;
  if (config_.top_p < 1.0) {
    double cum = 0;
    int64_t n = 0;
    while (n < keep && (n == 0 || cum < config_.top_p)) cum += p[size_t(n++)];
    keep = n;
  }
  if (config_.min_p > 0.0) {
    int64_t n = 1;
    while (n < keep && p[size_t(n)] >= config_.min_p * p[0]) ++n;
    keep = n;
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[size_t(i)];
  double u = double(rng_.uniform()) * total;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[size_t(i)];
    if (u <= 0) return order[size_t(i)];
  }
  return order[size_t(keep - 1)];
}

}  // namespace tune
