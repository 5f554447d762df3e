// cross_entropy on the CPU: log-sum-exp in double with the max subtracted.
#include <cmath>

#include "ops/cross_entropy.h"

namespace tune::cpu {

namespace {
template <class R>
double logsumexp(const R* l, int64_t V) {
  double mx = -INFINITY, sum = 0;
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(l[v]));
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(l[v]) - mx);
  return mx + std::log(sum);
}
}  // namespace

template <class R>
void cross_entropy_fwd(const R* logits, const int32_t* targets, R* loss, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; ++i) {
    const R* l = logits + i * V;
    loss[i] = targets[i] == kIgnoreIndex ? R(0) : R(logsumexp(l, V) - double(l[targets[i]]));
  }
}

template <class R>
void cross_entropy_bwd(const R* logits, const int32_t* targets, R scale, R* dlogits, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; ++i) {
    const R* l = logits + i * V;
    R* d = dlogits + i * V;
    if (targets[i] == kIgnoreIndex) {
      for (int64_t v = 0; v < V; ++v) d[v] = R(0);
      continue;
    }
    const double lse = logsumexp(l, V);
    for (int64_t v = 0; v < V; ++v) d[v] = R(double(scale) * std::exp(double(l[v]) - lse));
    d[targets[i]] -= scale;
  }
}

template void cross_entropy_fwd<float>(const float*, const int32_t*, float*, int64_t, int64_t);
template void cross_entropy_fwd<double>(const double*, const int32_t*, double*, int64_t, int64_t);
template void cross_entropy_bwd<float>(const float*, const int32_t*, float, float*, int64_t, int64_t);
template void cross_entropy_bwd<double>(const double*, const int32_t*, double, double*, int64_t, int64_t);

}  // namespace tune::cpu
