// moe_route on the CPU: softmax in double, then a partial selection sort for the top k.
#include <cmath>
#include <vector>

#include "ops/moe_route.h"

namespace tune::cpu {

void moe_route_fwd(const float* logits, bool renormalize, int32_t* experts, float* weights, int64_t T, int64_t E,
                   int64_t k) {
  std::vector<double> p(static_cast<size_t>(E));
  std::vector<bool> taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * E;
    double mx = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(l[e]));
    for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(double(l[e]) - mx));
    std::fill(taken.begin(), taken.end(), false);
    double kept = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (!taken[size_t(e)] && (best < 0 || p[size_t(e)] > p[size_t(best)])) best = e;
      taken[size_t(best)] = true;
      experts[t * k + j] = int32_t(best);
      weights[t * k + j] = float(p[size_t(best)] / sum);
      kept += p[size_t(best)] / sum;
    }
    if (renormalize)
      for (int64_t j = 0; j < k; ++j) weights[t * k + j] = float(double(weights[t * k + j]) / kept);
  }
}

}  // namespace tune::cpu
