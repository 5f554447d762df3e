// gdn_gates on the CPU: the specification of the CUDA kernels, arithmetic in double (as gdn_mixer_fwd/bwd).
#include <cmath>

#include "ops/cpu/activation.h"
#include "ops/gdn_gates.h"

namespace tune::cpu {

template <class R>
void gdn_gates_fwd(const R* ba, int64_t ld, const R* A_log, const R* dt_bias, R* beta, R* g, int64_t T,
                   int64_t nV) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const R* row = ba + t * ld;
      beta[t * nV + h] = R(sigmoid(double(row[h])));
      g[t * nV + h] = R(-std::exp(double(A_log[h])) * softplus(double(row[nV + h]) + double(dt_bias[h])));
    }
}

template <class R>
void gdn_gates_bwd(const R* ba, int64_t ld, const R* A_log, const R* dt_bias, const R* dbeta, const R* dg,
                   R* dba, int64_t ld_d, int64_t T, int64_t nV) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const R* row = ba + t * ld;
      const double be = sigmoid(double(row[h])), x = double(row[nV + h]) + double(dt_bias[h]);
      dba[t * ld_d + h] = R(double(dbeta[t * nV + h]) * be * (1.0 - be));
      dba[t * ld_d + nV + h] =
          R(double(dg[t * nV + h]) * -std::exp(double(A_log[h])) * (x > 20.0 ? 1.0 : sigmoid(x)));
    }
}

template void gdn_gates_fwd<float>(const float*, int64_t, const float*, const float*, float*, float*, int64_t,
                                   int64_t);
template void gdn_gates_fwd<double>(const double*, int64_t, const double*, const double*, double*, double*,
                                    int64_t, int64_t);
template void gdn_gates_bwd<float>(const float*, int64_t, const float*, const float*, const float*,
                                   const float*, float*, int64_t, int64_t, int64_t);
template void gdn_gates_bwd<double>(const double*, int64_t, const double*, const double*, const double*,
                                    const double*, double*, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
