// moe_shared_gate on the CPU.
#include <cmath>

#include "ops/moe_shared_gate.h"

namespace tune::cpu {

template <class R>
void moe_shared_gate_fwd(const R* x, const R* w, const R* ys, int64_t T, int64_t H, R* logit, R* out) {
  for (int64_t t = 0; t < T; ++t) {
    R l = 0;
    for (int64_t j = 0; j < H; ++j) l += x[t * H + j] * w[j];
    logit[t] = l;
    const R s = R(1) / (R(1) + std::exp(-l));
    if (out)
      for (int64_t j = 0; j < H; ++j) out[t * H + j] += s * ys[t * H + j];
  }
}

template <class R>
void moe_shared_gate_bwd(const R* w, const R* ys, const R* logit, const R* dout, int64_t T, int64_t H, R* dys,
                         R* dx) {
  for (int64_t t = 0; t < T; ++t) {
    const R s = R(1) / (R(1) + std::exp(-logit[t]));
    R dot = 0;
    for (int64_t j = 0; j < H; ++j) dot += dout[t * H + j] * ys[t * H + j];
    const R dl = s * (R(1) - s) * dot;
    for (int64_t j = 0; j < H; ++j) {
      dys[t * H + j] = s * dout[t * H + j];
      dx[t * H + j] += dl * w[j];
    }
  }
}

template void moe_shared_gate_fwd<float>(const float*, const float*, const float*, int64_t, int64_t, float*,
                                         float*);
template void moe_shared_gate_fwd<double>(const double*, const double*, const double*, int64_t, int64_t,
                                          double*, double*);
template void moe_shared_gate_bwd<float>(const float*, const float*, const float*, const float*, int64_t,
                                         int64_t, float*, float*);
template void moe_shared_gate_bwd<double>(const double*, const double*, const double*, const double*, int64_t,
                                          int64_t, double*, double*);

}  // namespace tune::cpu
