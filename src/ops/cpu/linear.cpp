// linear on the CPU: each output is a dot product of a row of x and a row of w, accumulated in 8 independent
// fp32 lanes (vectorizable without reassociation flags), threaded over output columns.
#include "core/threads.h"
#include "ops/linear.h"

namespace tune::cpu {

namespace {
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
}  // namespace

void linear_fwd(const float* x, const float* w, const float* b, float* y, int64_t T, int64_t K, int64_t N) {
  // Blocks of 4 rows of x share each loaded row of w.
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        for (int64_t t0 = 0; t0 < T; t0 += 4) {
          const int64_t t1 = std::min(T, t0 + 4);
          for (int64_t n = n0; n < n1; ++n) {
            const float* wr = w + n * K;
            const float bias = b ? b[n] : 0.0f;
            for (int64_t t = t0; t < t1; ++t) y[t * N + n] = dot(x + t * K, wr, K) + bias;
          }
        }
      },
      std::max<int64_t>(1, 4096 / std::max<int64_t>(K * T, 1)));
}

}  // namespace tune::cpu
