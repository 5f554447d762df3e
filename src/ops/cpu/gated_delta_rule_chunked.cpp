// gated_delta_rule in chunked (WY / UT-transform) form on the CPU, state in double: the specification of the
// CUDA kernels (cuda/gated_delta_rule.cu), tested against the recurrence (cpu/gated_delta_rule.cpp).
// Derivation, per chunk and head with S the incoming state: unrolling the recurrence inside the chunk gives
//   S_i = exp(G_i) S + sum_{m <= i} D_im k_m u_m^T, u_i = beta_i (v_i - S_{i-1}'^T k_i) with
//   S_{i-1}' = exp(G_i) S + sum_{m < i} D_im k_m u_m^T, so (I + A) u = diag(beta) (V - diag(exp G) K S), A as
// in the header. A document start inside the chunk zeroes the state there: terms across it vanish (D = 0) and
// positions after it do not see S (e = 0).
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/gated_delta_rule.h"

namespace tune::cpu {

template <class R>
void gated_delta_rule_chunked_fwd(const R* q, const R* k, const R* v, const R* g, const R* beta,
                                  const int32_t* doc_start, R* o, int64_t T, int64_t nV, int64_t dk, int64_t dv,
                                  int64_t chunk) {
  std::vector<double> S(static_cast<size_t>(dk * dv)), G, e, A, Tm, W, U;
  for (int64_t h = 0; h < nV; ++h) {
    const auto Q = [&](int64_t t, int64_t a) { return double(q[(t * nV + h) * dk + a]); };
    const auto K = [&](int64_t t, int64_t a) { return double(k[(t * nV + h) * dk + a]); };
    const auto V = [&](int64_t t, int64_t j) { return double(v[(t * nV + h) * dv + j]); };
    const auto doc = [&](int64_t t) { return doc_start ? int64_t(doc_start[t]) : int64_t(0); };
    std::fill(S.begin(), S.end(), 0.0);
    for (int64_t c0 = 0; c0 < T; c0 += chunk) {
      const int64_t n = std::min(chunk, T - c0);
      const auto N = size_t(n);
      G.assign(N, 0.0), e.assign(N, 0.0), A.assign(N * N, 0.0), Tm.assign(N * N, 0.0);
      W.assign(N * size_t(dk), 0.0), U.assign(N * size_t(dv), 0.0);
      for (int64_t i = 0; i < n; ++i) {
        G[size_t(i)] = (i ? G[size_t(i - 1)] : 0.0) + double(g[(c0 + i) * nV + h]);
        e[size_t(i)] = doc(c0 + i) < c0 ? std::exp(G[size_t(i)]) : 0.0;
      }
      const auto D = [&](int64_t i, int64_t j) {  // j <= i
        return doc(c0 + i) == doc(c0 + j) ? std::exp(G[size_t(i)] - G[size_t(j)]) : 0.0;
      };
      const auto b = [&](int64_t i) { return double(beta[(c0 + i) * nV + h]); };
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) {
          double kk = 0;
          for (int64_t a = 0; a < dk; ++a) kk += K(c0 + i, a) * K(c0 + j, a);
          A[size_t(i * n + j)] = b(i) * kk * D(i, j);
        }
      for (int64_t i = 0; i < n; ++i)  // Tm = (I + A)^-1, forward substitution
        for (int64_t j = 0; j <= i; ++j) {
          double s = i == j ? 1.0 : 0.0;
          for (int64_t m = j; m < i; ++m) s -= A[size_t(i * n + m)] * Tm[size_t(m * n + j)];
          Tm[size_t(i * n + j)] = s;
        }
      // W = Tm diag(beta e) K, U0 = Tm diag(beta) V, then u = U0 - W S (in U).
      for (int64_t i = 0; i < n; ++i)
        for (int64_t m = 0; m <= i; ++m) {
          const double t = Tm[size_t(i * n + m)] * b(m);
          for (int64_t a = 0; a < dk; ++a) W[size_t(i * dk + a)] += t * e[size_t(m)] * K(c0 + m, a);
          for (int64_t j = 0; j < dv; ++j) U[size_t(i * dv + j)] += t * V(c0 + m, j);
        }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t a = 0; a < dk; ++a)
          for (int64_t j = 0; j < dv; ++j) U[size_t(i * dv + j)] -= W[size_t(i * dk + a)] * S[size_t(a * dv + j)];
      // O = diag(e) Q S + lower_incl(Q K^T . D) u
      for (int64_t i = 0; i < n; ++i) {
        std::vector<double> out(static_cast<size_t>(dv), 0.0);
        for (int64_t a = 0; a < dk; ++a)
          for (int64_t j = 0; j < dv; ++j) out[size_t(j)] += e[size_t(i)] * Q(c0 + i, a) * S[size_t(a * dv + j)];
        for (int64_t m = 0; m <= i; ++m) {
          double qk = 0;
          for (int64_t a = 0; a < dk; ++a) qk += Q(c0 + i, a) * K(c0 + m, a);
          const double p = qk * D(i, m);
          for (int64_t j = 0; j < dv; ++j) out[size_t(j)] += p * U[size_t(m * dv + j)];
        }
        for (int64_t j = 0; j < dv; ++j) o[((c0 + i) * nV + h) * dv + j] = R(out[size_t(j)]);
      }
      // S <- e_l S + sum_m D_lm k_m u_m^T
      const int64_t l = n - 1;
      for (double& s : S) s *= e[size_t(l)];
      for (int64_t m = 0; m < n; ++m) {
        const double lam = D(l, m);
        for (int64_t a = 0; a < dk; ++a)
          for (int64_t j = 0; j < dv; ++j) S[size_t(a * dv + j)] += lam * K(c0 + m, a) * U[size_t(m * dv + j)];
      }
    }
  }
}

template void gated_delta_rule_chunked_fwd<float>(const float*, const float*, const float*, const float*,
                                                  const float*, const int32_t*, float*, int64_t, int64_t, int64_t,
                                                  int64_t, int64_t);
template void gated_delta_rule_chunked_fwd<double>(const double*, const double*, const double*, const double*,
                                                   const double*, const int32_t*, double*, int64_t, int64_t,
                                                   int64_t, int64_t, int64_t);

}  // namespace tune::cpu
