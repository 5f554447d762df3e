// gdn_qkv on the CPU: the specification of the CUDA kernels, arithmetic in double (as gdn_mixer_fwd/bwd).
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/activation.h"
#include "ops/gdn_qkv.h"

namespace tune::cpu {

template <class R>
void gdn_qkv_fwd(const R* conv, int64_t ld_conv, R* q, R* k, R* v, int64_t T, int64_t nK, int64_t nV,
                 int64_t dk, int64_t dv) {
  const int64_t r = nV / nK, key_dim = nK * dk;
  const double qscale = 1.0 / std::sqrt(double(dk));
  std::vector<double> s(static_cast<size_t>(dk));
  for (int64_t t = 0; t < T; ++t) {
    const R* row = conv + t * ld_conv;
    for (int64_t h = 0; h < nV; ++h) {
      for (int which = 0; which < 2; ++which) {  // q, then k
        const R* src = row + which * key_dim + (h / r) * dk;
        double ss = 0;
        for (int64_t i = 0; i < dk; ++i) {
          s[size_t(i)] = silu(double(src[i]));
          ss += s[size_t(i)] * s[size_t(i)];
        }
        const double inv = 1.0 / std::sqrt(ss + 1e-6) * (which == 0 ? qscale : 1.0);
        R* dst = (which == 0 ? q : k) + (t * nV + h) * dk;
        for (int64_t i = 0; i < dk; ++i) dst[i] = R(s[size_t(i)] * inv);
      }
      const R* src = row + 2 * key_dim + h * dv;
      for (int64_t i = 0; i < dv; ++i) v[(t * nV + h) * dv + i] = R(silu(double(src[i])));
    }
  }
}

template <class R>
void gdn_qkv_bwd(const R* conv, int64_t ld_conv, const R* dq, const R* dk, const R* dv, R* dconv,
                 int64_t ld_dconv, int64_t T, int64_t nK, int64_t nV, int64_t dk_, int64_t dv_) {
  const int64_t r = nV / nK, key_dim = nK * dk_;
  const double qscale = 1.0 / std::sqrt(double(dk_));
  std::vector<double> s(static_cast<size_t>(dk_)), ds(s.size());
  for (int64_t t = 0; t < T; ++t) {
    const R* row = conv + t * ld_conv;
    R* drow = dconv + t * ld_dconv;
    for (int64_t kh = 0; kh < nK; ++kh) {
      for (int which = 0; which < 2; ++which) {
        const int64_t off = which * key_dim + kh * dk_;
        double ss = 0;
        for (int64_t i = 0; i < dk_; ++i) {
          s[size_t(i)] = silu(double(row[off + i]));
          ss += s[size_t(i)] * s[size_t(i)];
        }
        const double inv = 1.0 / std::sqrt(ss + 1e-6), sc = which == 0 ? qscale : 1.0;
        std::fill(ds.begin(), ds.end(), 0.0);
        for (int64_t h = kh * r; h < (kh + 1) * r; ++h) {  // the value heads that read key head kh
          const R* dx = (which == 0 ? dq : dk) + (t * nV + h) * dk_;
          double dot = 0;
          for (int64_t i = 0; i < dk_; ++i) dot += double(dx[i]) * s[size_t(i)];
          for (int64_t i = 0; i < dk_; ++i)
            ds[size_t(i)] += sc * (inv * double(dx[i]) - s[size_t(i)] * inv * inv * inv * dot);
        }
        for (int64_t i = 0; i < dk_; ++i) drow[off + i] = R(ds[size_t(i)] * dsilu(double(row[off + i])));
      }
    }
    for (int64_t j = 0; j < nV * dv_; ++j) {
      const int64_t c = 2 * key_dim + j;
      drow[c] = R(double(dv[t * nV * dv_ + j]) * dsilu(double(row[c])));
    }
  }
}

template void gdn_qkv_fwd<float>(const float*, int64_t, float*, float*, float*, int64_t, int64_t, int64_t,
                                 int64_t, int64_t);
template void gdn_qkv_fwd<double>(const double*, int64_t, double*, double*, double*, int64_t, int64_t,
                                  int64_t, int64_t, int64_t);
template void gdn_qkv_bwd<float>(const float*, int64_t, const float*, const float*, const float*, float*,
                                 int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void gdn_qkv_bwd<double>(const double*, int64_t, const double*, const double*, const double*,
                                  double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

}  // namespace tune::cpu
