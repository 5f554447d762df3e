// conv1d_causal on the CPU: plain loops, accumulation in double.
#include <algorithm>
#include <vector>

#include "ops/conv1d_causal.h"

namespace tune::cpu {

template <class R>
void conv1d_causal_fwd(const R* x, const R* w, const int32_t* doc_start, R* y, int64_t T, int64_t C, int64_t K) {
  for (int64_t t = 0; t < T; ++t) {
    const int64_t s0 = doc_start ? int64_t(doc_start[t]) : 0;  // first readable position
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t s = t - K + 1 + k;
        if (s >= s0) acc += double(w[c * K + k]) * double(x[s * C + c]);
      }
      y[t * C + c] = R(acc);
    }
  }
}

// dx[s, c] = sum over the outputs t that read s of w[c, k] dy[t, c]; dw[c, k] += sum_t dy[t, c] x[s, c].
template <class R>
void conv1d_causal_bwd(const R* x, const R* w, const int32_t* doc_start, const R* dy, R* dx, R* dw, int64_t T,
                       int64_t C, int64_t K) {
  std::vector<double> acc(static_cast<size_t>(T * C), 0.0), dwa(static_cast<size_t>(dw ? C * K : 0), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t s0 = doc_start ? int64_t(doc_start[t]) : 0;
    for (int64_t c = 0; c < C; ++c) {
      const double g = double(dy[t * C + c]);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t s = t - K + 1 + k;
        if (s < s0) continue;
        acc[size_t(s * C + c)] += double(w[c * K + k]) * g;
        if (dw) dwa[size_t(c * K + k)] += g * double(x[s * C + c]);
      }
    }
  }
  for (int64_t i = 0; i < T * C; ++i) dx[i] = R(acc[size_t(i)]);
  if (dw)
    for (int64_t i = 0; i < C * K; ++i) dw[i] += R(dwa[size_t(i)]);
}

template void conv1d_causal_bwd<float>(const float*, const float*, const int32_t*, const float*, float*,
                                       float*, int64_t, int64_t, int64_t);
template void conv1d_causal_bwd<double>(const double*, const double*, const int32_t*, const double*, double*,
                                        double*, int64_t, int64_t, int64_t);

template void conv1d_causal_fwd<float>(const float*, const float*, const int32_t*, float*, int64_t, int64_t, int64_t);
template void conv1d_causal_fwd<double>(const double*, const double*, const int32_t*, double*, int64_t, int64_t,
                                        int64_t);

}  // namespace tune::cpu
