// linear on the CPU. Forward: dot products of rows of x and w in 8 independent lanes (vectorizable without
// reassociation flags), threaded over output columns. Backward: dx = dy W threaded over rows, dW += dy^T x
// threaded over output rows; both accumulate in the element type.
#include <algorithm>

#include "core/threads.h"
#include "ops/linear.h"

namespace tune::cpu {

namespace {
template <class R>
R dot(const R* a, const R* b, int64_t n) {
  R acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  R s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

int64_t min_chunk(int64_t work_per_item) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(work_per_item, 1)); }
}  // namespace

template <class R>
void linear_fwd(const R* x, const R* w, const R* b, R* y, int64_t T, int64_t K, int64_t N) {
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        for (int64_t t0 = 0; t0 < T; t0 += 4) {  // blocks of 4 rows of x share each loaded row of w
          const int64_t t1 = std::min(T, t0 + 4);
          for (int64_t n = n0; n < n1; ++n) {
            const R* wr = w + n * K;
            const R bias = b ? b[n] : R(0);
            for (int64_t t = t0; t < t1; ++t) y[t * N + n] = dot(x + t * K, wr, K) + bias;
          }
        }
      },
      min_chunk(K * T));
}

template <class R>
void linear_bwd(const R* x, const R* w, const R* dy, R* dx, bool accumulate_dx, R* dw, R* db, int64_t T, int64_t K,
                int64_t N) {
  if (dx) {
    parallel_for(
        T,
        [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            R* d = dx + t * K;
            if (!accumulate_dx) std::fill(d, d + K, R(0));
            for (int64_t n = 0; n < N; ++n) {
              const R g = dy[t * N + n];
              if (g == R(0)) continue;
              const R* wr = w + n * K;
              for (int64_t k = 0; k < K; ++k) d[k] += g * wr[k];
            }
          }
        },
        min_chunk(K * N));
  }
  if (dw || db) {
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          for (int64_t n = n0; n < n1; ++n) {
            for (int64_t t = 0; t < T; ++t) {
              const R g = dy[t * N + n];
              if (db) db[n] += g;
              if (!dw || g == R(0)) continue;
              const R* xr = x + t * K;
              R* d = dw + n * K;
              for (int64_t k = 0; k < K; ++k) d[k] += g * xr[k];
            }
          }
        },
        min_chunk(K * T));
  }
}

template void linear_fwd<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t);
template void linear_fwd<double>(const double*, const double*, const double*, double*, int64_t, int64_t, int64_t);
template void linear_bwd<float>(const float*, const float*, const float*, float*, bool, float*, float*, int64_t,
                                int64_t, int64_t);
template void linear_bwd<double>(const double*, const double*, const double*, double*, bool, double*, double*,
                                 int64_t, int64_t, int64_t);

}  // namespace tune::cpu
