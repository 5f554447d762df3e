// lora_b_bwd on the CPU: the specification of the CUDA kernel, plain loops with double accumulation.
#include "ops/lora_b_bwd.h"

namespace tune::cpu {

template <class R>
void lora_b_bwd(const R* dy, int64_t ldy, const R* u, int64_t ldu, const R* b, float s, R* db, R* du,
                int64_t lddu, bool accumulate_du, int64_t T, int64_t N, int64_t r) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < r; ++j) {
      double acc = 0;
      for (int64_t t = 0; t < T; ++t) acc += double(dy[t * ldy + n]) * double(u[t * ldu + j]);
      db[n * r + j] = R(double(db[n * r + j]) + double(s) * acc);
    }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r; ++j) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += double(dy[t * ldy + n]) * double(b[n * r + j]);
      const double v = double(s) * acc;
      du[t * lddu + j] = R(accumulate_du ? double(du[t * lddu + j]) + v : v);
    }
}

template void lora_b_bwd<float>(const float*, int64_t, const float*, int64_t, const float*, float, float*,
                                float*, int64_t, bool, int64_t, int64_t, int64_t);
template void lora_b_bwd<double>(const double*, int64_t, const double*, int64_t, const double*, float,
                                 double*, double*, int64_t, bool, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
