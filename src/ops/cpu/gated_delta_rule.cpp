// gated_delta_rule on the CPU: the plain per-token recurrence (the readable specification), state in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/gated_delta_rule.h"

namespace tune::cpu {

template <class R>
void gated_delta_rule_fwd(const R* q, const R* k, const R* v, const R* g, const R* beta, const int32_t* doc_start,
                          R* o, int64_t T, int64_t nV, int64_t dk, int64_t dv) {
  std::vector<double> S(static_cast<size_t>(dk * dv)), u(static_cast<size_t>(dv));
  for (int64_t h = 0; h < nV; ++h) {
    std::fill(S.begin(), S.end(), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      if (doc_start && doc_start[t] == t) std::fill(S.begin(), S.end(), 0.0);
      const R* qt = q + (t * nV + h) * dk;
      const R* kt = k + (t * nV + h) * dk;
      const R* vt = v + (t * nV + h) * dv;
      const double decay = std::exp(double(g[t * nV + h])), b = double(beta[t * nV + h]);
      for (double& s : S) s *= decay;
      for (int64_t j = 0; j < dv; ++j) {
        double m = 0;
        for (int64_t i = 0; i < dk; ++i) m += S[size_t(i * dv + j)] * double(kt[i]);
        u[size_t(j)] = b * (double(vt[j]) - m);
      }
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) S[size_t(i * dv + j)] += double(kt[i]) * u[size_t(j)];
      R* ot = o + (t * nV + h) * dv;
      for (int64_t j = 0; j < dv; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += S[size_t(i * dv + j)] * double(qt[i]);
        ot[j] = R(acc);
      }
    }
  }
}

template void gated_delta_rule_fwd<float>(const float*, const float*, const float*, const float*, const float*,
                                          const int32_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void gated_delta_rule_fwd<double>(const double*, const double*, const double*, const double*,
                                           const double*, const int32_t*, double*, int64_t, int64_t, int64_t,
                                           int64_t);

}  // namespace tune::cpu
