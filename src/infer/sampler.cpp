// Sampling: filters applied in the order transformers' generate uses (penalty, temperature, top-k, top-p,
// min-p). Only as much of the vocabulary is sorted as the filters need: top-k selects with nth_element, min-p
// keeps the tokens above its threshold (a prefix of the sorted order, as the top-p set is), and top-p sorts
// that set in growing steps until the cumulative probability is reached. Without filters the token is drawn
// in id order.
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
      if (id >= 0 && id < V)
        l[size_t(id)] = l[size_t(id)] > 0 ? l[size_t(id)] / config_.repetition_penalty
                                          : l[size_t(id)] * config_.repetition_penalty;
  }
  if (config_.temperature <= 0.0) return int32_t(std::max_element(l.begin(), l.end()) - l.begin());

  // Candidates in descending logit order where an order is needed (ties: lower id first).
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int32_t a, int32_t b) {
    return l[size_t(a)] > l[size_t(b)] || (l[size_t(a)] == l[size_t(b)] && a < b);
  };
  int64_t keep = V;
  if (config_.top_k > 0 && config_.top_k < V) {
    std::nth_element(order.begin(), order.begin() + config_.top_k, order.end(), before);
    keep = config_.top_k;
  }
  double mx = -INFINITY;
  for (int64_t i = 0; i < keep; ++i) mx = std::max(mx, l[size_t(order[size_t(i)])]);
  // p = exp((l - max) / T) over the kept set, normalized by its sum.
  std::vector<double> p(static_cast<size_t>(V), 0.0);
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    const int32_t id = order[size_t(i)];
    sum += (p[size_t(id)] = std::exp((l[size_t(id)] - mx) / config_.temperature));
  }
  const bool top_p = config_.top_p<1.0, min_p = config_.min_p> 0.0;
  if (top_p || min_p) {
    if (min_p)  // p >= min_p · p_max, and the largest unnormalized p is exp(0) = 1
      keep = std::partition(order.begin(), order.begin() + keep,
                            [&](int32_t id) { return p[size_t(id)] >= config_.min_p; }) -
             order.begin();
    auto by_p = [&](int32_t a, int32_t b) {
      return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
    };
    if (!top_p) {
      std::sort(order.begin(), order.begin() + keep, by_p);
    } else {
      // The smallest prefix of the sorted set whose probability reaches top_p (at least one token).
      int64_t sorted = 0, n = 0;
      double cum = 0;
      for (int64_t m = std::min<int64_t>(keep, 64);; m = std::min(keep, m * 8)) {
        std::partial_sort(order.begin() + sorted, order.begin() + m, order.begin() + keep, by_p);
        sorted = m;
        while (n < sorted && (n == 0 || cum < config_.top_p)) cum += p[size_t(order[size_t(n++)])] / sum;
        if (cum >= config_.top_p || sorted == keep) break;
      }
      keep = n;
    }
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[size_t(order[size_t(i)])];
  double u = double(rng_.uniform()) * total;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[size_t(order[size_t(i)])];
    if (u <= 0) return order[size_t(i)];
  }
  return order[size_t(keep - 1)];
}

}  // namespace tune
