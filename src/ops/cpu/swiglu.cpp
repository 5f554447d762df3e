// swiglu on the CPU.
#include <cmath>

#include "ops/swiglu.h"

namespace tune::cpu {

template <class R>
void swiglu_fwd(const R* g, const R* u, R* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] / (R(1) + std::exp(-g[i])) * u[i];
}

template <class R>
void swiglu_bwd(const R* g, const R* u, const R* dh, R* dg, R* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const R s = R(1) / (R(1) + std::exp(-g[i])), d = dh[i];
    const R gi = g[i], ui = u[i];  // read before writing: dg/du may alias dh
    du[i] = d * gi * s;
    dg[i] = d * ui * s * (R(1) + gi * (R(1) - s));
  }
}

template void swiglu_fwd<float>(const float*, const float*, float*, int64_t);
template void swiglu_fwd<double>(const double*, const double*, double*, int64_t);
template void swiglu_bwd<float>(const float*, const float*, const float*, float*, float*, int64_t);
template void swiglu_bwd<double>(const double*, const double*, const double*, double*, double*, int64_t);

}  // namespace tune::cpu
