// gated_delta_rule on the CPU: the plain per-token recurrence (the readable specification), state in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/gated_delta_rule.h"

namespace tune::cpu {

template <class R>
void gated_delta_rule_fwd(const R* q, const R* k, const R* v, const R* g, const R* beta, const int32_t* doc_start,
                          R* o, int64_t T, int64_t nV, int64_t dk, int64_t dv) {
  std::vector<double> S(static_cast<size_t>(dk * dv)), u(static_cast<size_t>(dv));
  for (int64_t h = 0; h < nV; ++h) {
    std::fill(S.begin(), S.end(), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      if (doc_start && doc_start[t] == t) std::fill(S.begin(), S.end(), 0.0);
      const R* qt = q + (t * nV + h) * dk;
      const R* kt = k + (t * nV + h) * dk;
      const R* vt = v + (t * nV + h) * dv;
      const double decay = std::exp(double(g[t * nV + h])), b = double(beta[t * nV + h]);
      for (double& s : S) s *= decay;
      for (int64_t j = 0; j < dv; ++j) {
        double m = 0;
        for (int64_t i = 0; i < dk; ++i) m += S[size_t(i * dv + j)] * double(kt[i]);
        u[size_t(j)] = b * (double(vt[j]) - m);
      }
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) S[size_t(i * dv + j)] += double(kt[i]) * u[size_t(j)];
      R* ot = o + (t * nV + h) * dv;
      for (int64_t j = 0; j < dv; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += S[size_t(i * dv + j)] * double(qt[i]);
        ot[j] = R(acc);
      }
    }
  }
}

// Backward through the recurrence, per head, from the kept states S_t (S_{-1} = 0, and 0 before a document
// start):
//   S' = a S_{t-1} (a = exp g); m = S'^T k; u = beta (v - m); S_t = S' + k u^T; o = S_t^T q.
template <class R>
void gated_delta_rule_bwd(const R* q, const R* k, const R* v, const R* g, const R* beta,
                          const int32_t* doc_start, const R* dout, R* dq, R* dk, R* dv, R* dg, R* dbeta,
                          int64_t T, int64_t nV, int64_t dk_, int64_t dv_) {
  const int64_t DK = dk_, DV = dv_, N = DK * DV;
  std::vector<double> states(static_cast<size_t>((T + 1) * N));  // states[t + 1] = S_t; states[0] = 0
  std::vector<double> us(static_cast<size_t>(T * DV)), ms(static_cast<size_t>(T * DV));
  std::vector<double> dS(static_cast<size_t>(N)), du(static_cast<size_t>(DV)), dm(static_cast<size_t>(DV));
  std::vector<double> dkt(static_cast<size_t>(DK));
  for (int64_t h = 0; h < nV; ++h) {
    std::fill(states.begin(), states.begin() + N, 0.0);
    for (int64_t t = 0; t < T; ++t) {
      const bool reset = doc_start && doc_start[t] == t;
      const double* Sp = states.data() + t * N;
      double* S = states.data() + (t + 1) * N;
      const R* kt = k + (t * nV + h) * DK;
      const R* vt = v + (t * nV + h) * DV;
      const double a = std::exp(double(g[t * nV + h])), b = double(beta[t * nV + h]);
      for (int64_t i = 0; i < N; ++i) S[i] = reset ? 0.0 : a * Sp[i];
      for (int64_t j = 0; j < DV; ++j) {
        double m = 0;
        for (int64_t i = 0; i < DK; ++i) m += S[i * DV + j] * double(kt[i]);
        ms[size_t(t * DV + j)] = m;
        us[size_t(t * DV + j)] = b * (double(vt[j]) - m);
      }
      for (int64_t i = 0; i < DK; ++i)
        for (int64_t j = 0; j < DV; ++j) S[i * DV + j] += double(kt[i]) * us[size_t(t * DV + j)];
    }
    std::fill(dS.begin(), dS.end(), 0.0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const bool reset = doc_start && doc_start[t] == t;
      const double* Sprev = states.data() + t * N;  // S_{t-1}
      const double* S = states.data() + (t + 1) * N;
      const R* qt = q + (t * nV + h) * DK;
      const R* kt = k + (t * nV + h) * DK;
      const R* vt = v + (t * nV + h) * DV;
      const R* dot = dout + (t * nV + h) * DV;
      const double a = std::exp(double(g[t * nV + h])), b = double(beta[t * nV + h]);
      const double* u = us.data() + t * DV;
      const double* m = ms.data() + t * DV;
      // o = S_t^T q
      for (int64_t i = 0; i < DK; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < DV; ++j) {
          acc += S[i * DV + j] * double(dot[j]);
          dS[size_t(i * DV + j)] += double(qt[i]) * double(dot[j]);
        }
        dq[(t * nV + h) * DK + i] = R(acc);
      }
      // S_t = S' + k u^T
      for (int64_t i = 0; i < DK; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < DV; ++j) acc += dS[size_t(i * DV + j)] * u[j];
        dkt[size_t(i)] = acc;
      }
      double db = 0;
      for (int64_t j = 0; j < DV; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < DK; ++i) acc += double(kt[i]) * dS[size_t(i * DV + j)];
        du[size_t(j)] = acc;
        dv[(t * nV + h) * DV + j] = R(b * acc);
        dm[size_t(j)] = -b * acc;
        db += acc * (double(vt[j]) - m[j]);
      }
      dbeta[t * nV + h] = R(db);
      // m = S'^T k with S' = a S_{t-1} (0 at a document start)
      double da = 0;
      for (int64_t i = 0; i < DK; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < DV; ++j) {
          const double sp = reset ? 0.0 : a * Sprev[i * DV + j];
          acc += sp * dm[size_t(j)];
          double& d = dS[size_t(i * DV + j)];
          d += double(kt[i]) * dm[size_t(j)];  // now dS'
          if (!reset) da += d * Sprev[i * DV + j];
          d = reset ? 0.0 : a * d;  // now dS_{t-1}
        }
        dk[(t * nV + h) * DK + i] = R(dkt[size_t(i)] + acc);
      }
      dg[t * nV + h] = R(da * a);
    }
  }
}

template void gated_delta_rule_bwd<float>(const float*, const float*, const float*, const float*,
                                          const float*, const int32_t*, const float*, float*, float*, float*,
                                          float*, float*, int64_t, int64_t, int64_t, int64_t);
template void gated_delta_rule_bwd<double>(const double*, const double*, const double*, const double*,
                                           const double*, const int32_t*, const double*, double*, double*,
                                           double*, double*, double*, int64_t, int64_t, int64_t, int64_t);

template void gated_delta_rule_fwd<float>(const float*, const float*, const float*, const float*, const float*,
                                          const int32_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void gated_delta_rule_fwd<double>(const double*, const double*, const double*, const double*,
                                           const double*, const int32_t*, double*, int64_t, int64_t, int64_t,
                                           int64_t);

}  // namespace tune::cpu
