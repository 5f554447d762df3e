// gated_rmsnorm on the CPU: the specification of the CUDA kernels, arithmetic in double (as
// gdn_mixer_fwd/bwd).
#include <cmath>

#include "ops/cpu/activation.h"
#include "ops/gated_rmsnorm.h"

namespace tune::cpu {

template <class R>
void gated_rmsnorm_fwd(const R* o, const R* z, int64_t ldz, const R* w, R eps, R* y, int64_t T, int64_t nV,
                       int64_t dv) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const R* oi = o + (t * nV + h) * dv;
      const R* zi = z + t * ldz + h * dv;
      R* yi = y + (t * nV + h) * dv;
      double ss = 0;
      for (int64_t j = 0; j < dv; ++j) ss += double(oi[j]) * oi[j];
      const double inv = 1.0 / std::sqrt(ss / double(dv) + double(eps));
      for (int64_t j = 0; j < dv; ++j) yi[j] = R(double(w[j]) * double(oi[j]) * inv * silu(double(zi[j])));
    }
}

template <class R>
void gated_rmsnorm_bwd(const R* o, const R* z, int64_t ldz, const R* w, R eps, const R* dy, R* d_o, R* dz,
                       int64_t T, int64_t nV, int64_t dv) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const R* oi = o + (t * nV + h) * dv;
      const R* zi = z + t * ldz + h * dv;
      const R* dyi = dy + (t * nV + h) * dv;
      double ss = 0, dot = 0;  // dot = sum_j n_j o_j, n = dy w silu(z)
      for (int64_t j = 0; j < dv; ++j) {
        ss += double(oi[j]) * oi[j];
        dot += double(dyi[j]) * double(w[j]) * silu(double(zi[j])) * double(oi[j]);
      }
      const double inv = 1.0 / std::sqrt(ss / double(dv) + double(eps));
      for (int64_t j = 0; j < dv; ++j) {
        const double zj = zi[j], oj = oi[j], dw = double(dyi[j]) * double(w[j]);
        dz[t * ldz + h * dv + j] = R(dw * oj * inv * dsilu(zj));
        d_o[(t * nV + h) * dv + j] = R(inv * dw * silu(zj) - oj * inv * inv * inv / double(dv) * dot);
      }
    }
}

template void gated_rmsnorm_fwd<float>(const float*, const float*, int64_t, const float*, float, float*,
                                       int64_t, int64_t, int64_t);
template void gated_rmsnorm_fwd<double>(const double*, const double*, int64_t, const double*, double, double*,
                                        int64_t, int64_t, int64_t);
template void gated_rmsnorm_bwd<float>(const float*, const float*, int64_t, const float*, float, const float*,
                                       float*, float*, int64_t, int64_t, int64_t);
template void gated_rmsnorm_bwd<double>(const double*, const double*, int64_t, const double*, double,
                                        const double*, double*, double*, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
