// attention on the CPU: one query row at a time. The forward is threaded over (position, head); the backward over
// kv heads, so each thread owns the dk/dv rows it accumulates into.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threads.h"
#include "ops/attention.h"

namespace tune::cpu {

namespace {
// Softmax probabilities of query row (t, h) over keys [s0, t], into p[s0..t].
template <class R>
void probs(const R* q, const R* k, int64_t t, int64_t h, int64_t s0, R scale, int64_t nH, int64_t nKV, int64_t d,
           std::vector<double>& p) {
  const int64_t kh = h / (nH / nKV);
  const R* qr = q + (t * nH + h) * d;
  double mx = -INFINITY, sum = 0;
  for (int64_t s = s0; s <= t; ++s) {
    const R* kr = k + (s * nKV + kh) * d;
    double dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += double(qr[j]) * kr[j];
    p[size_t(s)] = dot * double(scale);
    mx = std::max(mx, p[size_t(s)]);
  }
  for (int64_t s = s0; s <= t; ++s) sum += (p[size_t(s)] = std::exp(p[size_t(s)] - mx));
  for (int64_t s = s0; s <= t; ++s) p[size_t(s)] /= sum;
}
}  // namespace

template <class R>
void attention_fwd(const R* q, const R* k, const R* v, const int32_t* doc_start, R scale, R* o, int64_t T, int64_t nH,
                   int64_t nKV, int64_t d) {
  parallel_for(T * nH, [&](int64_t i0, int64_t i1) {
    std::vector<double> p(static_cast<size_t>(T)), acc(static_cast<size_t>(d));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / nH, h = i % nH, kh = h / (nH / nKV), s0 = doc_start ? doc_start[t] : 0;
      probs(q, k, t, h, s0, scale, nH, nKV, d, p);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t s = s0; s <= t; ++s) {
        const R* vr = v + (s * nKV + kh) * d;
        for (int64_t j = 0; j < d; ++j) acc[size_t(j)] += p[size_t(s)] * vr[j];
      }
      for (int64_t j = 0; j < d; ++j) o[(t * nH + h) * d + j] = R(acc[size_t(j)]);
    }
  });
}

template <class R>
void attention_bwd(const R* q, const R* k, const R* v, const int32_t* doc_start, R scale, const R* d_o, R* dq, R* dk,
                   R* dv, int64_t T, int64_t nH, int64_t nKV, int64_t d) {
  const int64_t group = nH / nKV;
  std::fill(dk, dk + T * nKV * d, R(0));
  std::fill(dv, dv + T * nKV * d, R(0));
  parallel_for(nKV, [&](int64_t kh0, int64_t kh1) {
    std::vector<double> p(static_cast<size_t>(T)), dp(static_cast<size_t>(T)), dqa(static_cast<size_t>(d));
    for (int64_t kh = kh0; kh < kh1; ++kh) {
      for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
        for (int64_t t = 0; t < T; ++t) {
          const int64_t s0 = doc_start ? doc_start[t] : 0;
          probs(q, k, t, h, s0, scale, nH, nKV, d, p);
          const R* dor = d_o + (t * nH + h) * d;
          const R* qr = q + (t * nH + h) * d;
          double pdp = 0;
          for (int64_t s = s0; s <= t; ++s) {
            const R* vr = v + (s * nKV + kh) * d;
            double dot = 0;
            for (int64_t j = 0; j < d; ++j) dot += double(dor[j]) * vr[j];
            dp[size_t(s)] = dot;
            pdp += p[size_t(s)] * dot;
            R* dvr = dv + (s * nKV + kh) * d;
            for (int64_t j = 0; j < d; ++j) dvr[j] += R(p[size_t(s)] * dor[j]);
          }
          std::fill(dqa.begin(), dqa.end(), 0.0);
          for (int64_t s = s0; s <= t; ++s) {
            const double ds = p[size_t(s)] * (dp[size_t(s)] - pdp) * double(scale);
            const R* kr = k + (s * nKV + kh) * d;
            R* dkr = dk + (s * nKV + kh) * d;
            for (int64_t j = 0; j < d; ++j) {
              dqa[size_t(j)] += ds * kr[j];
              dkr[j] += R(ds * qr[j]);
            }
          }
          for (int64_t j = 0; j < d; ++j) dq[(t * nH + h) * d + j] = R(dqa[size_t(j)]);
        }
      }
    }
  });
}

template void attention_fwd<float>(const float*, const float*, const float*, const int32_t*, float, float*, int64_t,
                                   int64_t, int64_t, int64_t);
template void attention_fwd<double>(const double*, const double*, const double*, const int32_t*, double, double*,
                                    int64_t, int64_t, int64_t, int64_t);
template void attention_bwd<float>(const float*, const float*, const float*, const int32_t*, float, const float*,
                                   float*, float*, float*, int64_t, int64_t, int64_t, int64_t);
template void attention_bwd<double>(const double*, const double*, const double*, const int32_t*, double,
                                    const double*, double*, double*, double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
