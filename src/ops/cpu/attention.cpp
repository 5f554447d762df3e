// attention on the CPU: one query row at a time, threaded over (position, head).
#include <cmath>
#include <vector>

#include "core/threads.h"
#include "ops/attention.h"

namespace tune::cpu {

void attention_fwd(const float* q, const float* k, const float* v, const int32_t* doc_start, float scale, float* o,
                   int64_t T, int64_t nH, int64_t nKV, int64_t d) {
  const int64_t group = nH / nKV;
  parallel_for(T * nH, [&](int64_t i0, int64_t i1) {
    std::vector<float> p(static_cast<size_t>(T));
    std::vector<double> acc(static_cast<size_t>(d));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / nH, h = i % nH, kh = h / group;
      const int64_t s0 = doc_start ? doc_start[t] : 0;
      const float* qr = q + (t * nH + h) * d;
      float mx = -INFINITY;
      for (int64_t s = s0; s <= t; ++s) {
        const float* kr = k + (s * nKV + kh) * d;
        double dot = 0;
        for (int64_t j = 0; j < d; ++j) dot += double(qr[j]) * kr[j];
        p[size_t(s)] = float(dot) * scale;
        mx = std::max(mx, p[size_t(s)]);
      }
      double sum = 0;
      for (int64_t s = s0; s <= t; ++s) {
        p[size_t(s)] = std::exp(p[size_t(s)] - mx);
        sum += p[size_t(s)];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t s = s0; s <= t; ++s) {
        const float* vr = v + (s * nKV + kh) * d;
        const double w = p[size_t(s)] / sum;
        for (int64_t j = 0; j < d; ++j) acc[size_t(j)] += w * vr[j];
      }
      float* orow = o + (t * nH + h) * d;
      for (int64_t j = 0; j < d; ++j) orow[j] = float(acc[size_t(j)]);
    }
  });
}

}  // namespace tune::cpu
