// sigmoid_gate on the CPU: the specification of the CUDA kernels, arithmetic in double (as
// attention_mixer_fwd and its backward).
#include "ops/sigmoid_gate.h"
#include "ops/cpu/activation.h"

namespace tune::cpu {

template <class R>
void sigmoid_gate_fwd(const R* x, int64_t ldx, const R* g, int64_t ldg, R* y, int64_t ldy, int64_t T,
                      int64_t N) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < N; ++i)
      y[t * ldy + i] = R(double(x[t * ldx + i]) * sigmoid(double(g[t * ldg + i])));
}

template <class R>
void sigmoid_gate_bwd(const R* x, int64_t ldx, const R* g, int64_t ldg, const R* dy, int64_t ldy, R* dx,
                      int64_t lddx, R* dg, int64_t lddg, int64_t T, int64_t N) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < N; ++i) {
      // All reads before the writes: dx may alias dy, dg may alias g.
      const double s = sigmoid(double(g[t * ldg + i])), d = dy[t * ldy + i], xi = x[t * ldx + i];
      dx[t * lddx + i] = R(d * s);
      dg[t * lddg + i] = R(d * xi * s * (1.0 - s));
    }
}

template void sigmoid_gate_fwd<float>(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t,
                                      int64_t);
template void sigmoid_gate_fwd<double>(const double*, int64_t, const double*, int64_t, double*, int64_t,
                                       int64_t, int64_t);
template void sigmoid_gate_bwd<float>(const float*, int64_t, const float*, int64_t, const float*, int64_t,
                                      float*, int64_t, float*, int64_t, int64_t, int64_t);
template void sigmoid_gate_bwd<double>(const double*, int64_t, const double*, int64_t, const double*, int64_t,
                                       double*, int64_t, double*, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
