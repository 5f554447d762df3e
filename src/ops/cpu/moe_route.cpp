// moe_route on the CPU: softmax in double, then a partial selection sort for the top k.
#include <cmath>
#include <vector>

#include "ops/moe_route.h"

namespace tune::cpu {

namespace {
template <class R>
void softmax_row(const R* l, int64_t E, std::vector<double>& p) {
  double mx = -INFINITY, sum = 0;
  for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(l[e]));
  for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(double(l[e]) - mx));
  for (int64_t e = 0; e < E; ++e) p[size_t(e)] /= sum;
}
}  // namespace

template <class R>
void moe_route_fwd(const R* logits, bool renormalize, int32_t* experts, R* weights, int64_t T, int64_t E, int64_t k) {
  std::vector<double> p(static_cast<size_t>(E)), kept(static_cast<size_t>(k));
  std::vector<char> taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    softmax_row(logits + t * E, E, p);
    std::fill(taken.begin(), taken.end(), 0);
    double total = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (!taken[size_t(e)] && (best < 0 || p[size_t(e)] > p[size_t(best)])) best = e;
      taken[size_t(best)] = 1;
      experts[t * k + j] = int32_t(best);
      total += (kept[size_t(j)] = p[size_t(best)]);
    }
    for (int64_t j = 0; j < k; ++j) weights[t * k + j] = R(kept[size_t(j)] / (renormalize ? total : 1.0));
  }
}

template <class R>
void moe_route_bwd(const R* logits, bool renormalize, const int32_t* experts, const R* dweights, R* dlogits, int64_t T,
                   int64_t E, int64_t k) {
  std::vector<double> p(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    softmax_row(logits + t * E, E, p);
    const int32_t* ex = experts + t * k;
    const R* dw = dweights + t * k;
    R* dl = dlogits + t * E;
    std::fill(dl, dl + E, R(0));
    if (renormalize) {
      // w_j = softmax over the kept logits: dl_{e_j} = w_j (dw_j - sum_i dw_i w_i).
      double total = 0, dot = 0;
      for (int64_t j = 0; j < k; ++j) total += p[size_t(ex[j])];
      for (int64_t j = 0; j < k; ++j) dot += double(dw[j]) * p[size_t(ex[j])] / total;
      for (int64_t j = 0; j < k; ++j) {
        const double w = p[size_t(ex[j])] / total;
        dl[ex[j]] = R(w * (double(dw[j]) - dot));
      }
    } else {
      // w_j = p_{e_j}: dl_m = [m = e_j] dw_j p_m - p_m sum_j dw_j p_{e_j}.
      double dot = 0;
      for (int64_t j = 0; j < k; ++j) dot += double(dw[j]) * p[size_t(ex[j])];
      for (int64_t e = 0; e < E; ++e) dl[e] = R(-p[size_t(e)] * dot);
      for (int64_t j = 0; j < k; ++j) dl[ex[j]] += R(double(dw[j]) * p[size_t(ex[j])]);
    }
  }
}

template void moe_route_fwd<float>(const float*, bool, int32_t*, float*, int64_t, int64_t, int64_t);
template void moe_route_fwd<double>(const double*, bool, int32_t*, double*, int64_t, int64_t, int64_t);
template void moe_route_bwd<float>(const float*, bool, const int32_t*, const float*, float*, int64_t, int64_t,
                                   int64_t);
template void moe_route_bwd<double>(const double*, bool, const int32_t*, const double*, double*, int64_t, int64_t,
                                    int64_t);

}  // namespace tune::cpu
