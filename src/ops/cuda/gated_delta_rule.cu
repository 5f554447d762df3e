// gated_delta_rule on CUDA: the chunked (WY / UT-transform) form of ops/gated_delta_rule.h with chunks of 64.
// Chunk-parallel kernels build each chunk's matrices (one block per chunk and head, register-blocked fp32
// products from shared memory and L1); state kernels walk the chunks of one head in order, one block per
// (head, block of kBV state columns), since the columns of S evolve independently.
// Forward: prep (Tm, W, U0) -> state (S at each chunk start, u = U0 - W S) -> out (O).
// Backward: prep, state, then dU0 = P^T dO -> reverse state pass (dS at each chunk end, du) -> per-chunk grads.
#include <cuda_runtime.h>

#include "kernel_util.cuh"
#include "ops/gated_delta_rule.h"

namespace tune::cuda {

namespace {

constexpr int kChunk = 64, kThreads = 256, kBV = 16;

// One chunk's gates, for positions i < n of chunk [c0, c0 + n) of head h:
//   G_i = cumsum g; eg_i = exp(G_i) if t_i's document began before c0 (else 0); lam_i = D_{l,i} (l = n - 1);
//   el = eg_l; ds_i = doc_start (0 without one), so same(i, j) is ds_i == ds_j.
struct Gates {
  float G[kChunk], eg[kChunk], lam[kChunk], beta[kChunk], el;
  int ds[kChunk];
  int n;
  __device__ bool same(int i, int j) const { return ds[i] == ds[j]; }
  // D_ij for j <= i (0 across documents).
  __device__ float decay(int i, int j) const { return same(i, j) ? __expf(G[i] - G[j]) : 0.0f; }
};

// Fills `s` (shared) for chunk c of head h; ends with a barrier.
__device__ void gates_load(Gates& s, const float* g, const float* beta, const int32_t* doc_start, int64_t T,
                           int64_t nV, int64_t c, int64_t h) {
  const int64_t c0 = c * kChunk;
  const int n = int(T - c0 < kChunk ? T - c0 : int64_t(kChunk)), t = threadIdx.x;
  __syncthreads();  // earlier readers of `s` are done
  if (t < n) {
    s.ds[t] = doc_start ? doc_start[c0 + t] : 0;
    s.beta[t] = beta[(c0 + t) * nV + h];
  }
  if (t == 0) {
    s.n = n;
    float acc = 0.0f;
    for (int i = 0; i < n; ++i) s.G[i] = acc += g[(c0 + i) * nV + h];
  }
  __syncthreads();
  if (t < n) {
    const bool carried = s.ds[t] < c0;
    s.eg[t] = carried ? __expf(s.G[t]) : 0.0f;
    s.lam[t] = s.decay(n - 1, t);
    if (t == n - 1) s.el = s.eg[t];
  }
  __syncthreads();
}

// C (M, N) = sum_r a(i, r) b(r, j), handed element by element to epi(i, j, c). Each thread owns TM x TN tiles of
// C (register blocking); consecutive threads take consecutive column tiles.
template <int TM, int TN, class FA, class FB, class FE>
__device__ __forceinline__ void block_mm(int M, int N, int R, FA a, FB b, FE epi) {
  const int mt = (M + TM - 1) / TM, nt = (N + TN - 1) / TN;
  for (int tile = threadIdx.x; tile < mt * nt; tile += blockDim.x) {
    const int i0 = tile / nt * TM, j0 = tile % nt * TN;
    float acc[TM][TN] = {};
    for (int r = 0; r < R; ++r) {
      float av[TM], bv[TN];
#pragma unroll
      for (int m = 0; m < TM; ++m) av[m] = i0 + m < M ? a(i0 + m, r) : 0.0f;
#pragma unroll
      for (int x = 0; x < TN; ++x) bv[x] = j0 + x < N ? b(r, j0 + x) : 0.0f;
#pragma unroll
      for (int m = 0; m < TM; ++m)
#pragma unroll
        for (int x = 0; x < TN; ++x) acc[m][x] += av[m] * bv[x];
    }
#pragma unroll
    for (int m = 0; m < TM; ++m)
#pragma unroll
      for (int x = 0; x < TN; ++x)
        if (i0 + m < M && j0 + x < N) epi(i0 + m, j0 + x, acc[m][x]);
  }
}

// Tm = (I + A)^-1 for A (n, n) strictly lower (row stride kChunk), by forward substitution row by row:
// Tm_i = e_i - sum_{m < i} A_im Tm_m. Ends with a barrier.
__device__ void invert_unit_lower(const float* A, float* Tm, int n) {
  __syncthreads();
  for (int i = 0; i < n; ++i) {
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      float s = i == j ? 1.0f : 0.0f;
      for (int m = j; m < i; ++m) s -= A[i * kChunk + m] * Tm[m * kChunk + j];
      Tm[i * kChunk + j] = s;
    }
    __syncthreads();
  }
}

// Views of one chunk and head of a (T, nV, d) tensor: element (i, a) of the chunk's rows.
template <class E>
struct Rows {
  E* p;
  int64_t ld;
  __device__ float operator()(int i, int a) const { return to_f32(p[i * ld + a]); }
  __device__ E& at(int i, int a) const { return p[i * ld + a]; }
};

template <class E>
__device__ Rows<E> rows(E* base, int64_t c, int64_t h, int64_t nV, int64_t d) {
  return Rows<E>{base + (c * kChunk * nV + h) * d, nV * d};
}

struct Dims {
  int64_t T, nV, dk, dv, chunks;
};

// Workspace pointers (f32): W, U (u, or U0 before the state pass), S (state at chunk start), dU, dS (at chunk end).
struct Work {
  float *W, *U, *S, *dU, *dS;
};

Work work_split(void* ws, const Dims& d, bool backward) {
  float* p = static_cast<float*>(ws);
  Work w{};
  w.W = p, p += d.T * d.nV * d.dk;
  w.U = p, p += d.T * d.nV * d.dv;
  w.S = p, p += d.chunks * d.nV * d.dk * d.dv;
  if (backward) {
    w.dU = p, p += d.T * d.nV * d.dv;
    w.dS = p;
  }
  return w;
}

__device__ float* state_at(float* S, int64_t c, int64_t h, const Dims& d) {
  return S + (c * d.nV + h) * d.dk * d.dv;
}

// Per chunk: A, Tm, then W = Tm diag(beta eg) K and U0 = Tm diag(beta) V. Shared: A, Tm (kChunk^2 each).
__global__ void __launch_bounds__(kThreads) gdr_prep_kernel(const bf16* k, const bf16* v, const float* g,
                                                              const float* beta, const int32_t* doc_start, Dims d,
                                                              Work w) {
  extern __shared__ float smem[];
  float *A = smem, *Tm = smem + kChunk * kChunk;
  __shared__ Gates gt;
  const int64_t c = blockIdx.x, h = blockIdx.y;
  gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
  const int n = gt.n, dk = int(d.dk), dv = int(d.dv);
  const auto K = rows(k, c, h, d.nV, d.dk);
  const auto V = rows(v, c, h, d.nV, d.dv);
  block_mm<4, 4>(
      n, n, dk, K, [&](int r, int j) { return K(j, r); },
      [&](int i, int j, float kk) { A[i * kChunk + j] = j < i ? gt.beta[i] * kk * gt.decay(i, j) : 0.0f; });
  invert_unit_lower(A, Tm, n);
  const auto Wr = rows(w.W, c, h, d.nV, d.dk);
  const auto Ur = rows(w.U, c, h, d.nV, d.dv);
  block_mm<4, 4>(
      n, dk, n, [&](int i, int m) { return Tm[i * kChunk + m] * gt.beta[m] * gt.eg[m]; }, K,
      [&](int i, int a, float x) { Wr.at(i, a) = x; });
  block_mm<4, 4>(
      n, dv, n, [&](int i, int m) { return Tm[i * kChunk + m] * gt.beta[m]; }, V,
      [&](int i, int j, float x) { Ur.at(i, j) = x; });
}

// Forward state pass for head blockIdx.y and state columns [j0, j0 + kBV): per chunk, save S, u = U0 - W S
// (in place in U), S <- el S + sum_m lam_m k_m u_m^T. Shared: S (dk, kBV).
__global__ void __launch_bounds__(kThreads) gdr_state_kernel(const bf16* k, const float* g, const float* beta,
                                                               const int32_t* doc_start, Dims d, Work w) {
  extern __shared__ float S[];
  __shared__ Gates gt;
  const int64_t h = blockIdx.y, j0 = int64_t(blockIdx.x) * kBV;
  const int dk = int(d.dk);
  for (int i = threadIdx.x; i < dk * kBV; i += blockDim.x) S[i] = 0.0f;
  for (int64_t c = 0; c < d.chunks; ++c) {
    gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
    const int n = gt.n;
    float* Sg = state_at(w.S, c, h, d) + j0;
    for (int i = threadIdx.x; i < dk * kBV; i += blockDim.x) Sg[i / kBV * d.dv + i % kBV] = S[i];
    const auto K = rows(k, c, h, d.nV, d.dk);
    const auto Wr = rows(w.W, c, h, d.nV, d.dk);
    const auto Ur = rows(w.U + j0, c, h, d.nV, d.dv);
    block_mm<2, 2>(
        n, kBV, dk, Wr, [&](int a, int j) { return S[a * kBV + j]; },
        [&](int i, int j, float ws) { Ur.at(i, j) -= ws; });
    __syncthreads();
    block_mm<2, 2>(
        dk, kBV, n, [&](int a, int m) { return gt.lam[m] * K(m, a); }, Ur,
        [&](int a, int j, float x) { S[a * kBV + j] = gt.el * S[a * kBV + j] + x; });
  }
}

// O = diag(eg) Q S + P u with P = lower_incl(Q K^T . D). Shared: P (kChunk^2), O (kChunk, dv).
__global__ void __launch_bounds__(kThreads) gdr_out_kernel(const bf16* q, const bf16* k, const float* g,
                                                             const float* beta, const int32_t* doc_start, bf16* o,
                                                             Dims d, Work w) {
  extern __shared__ float smem[];
  float *P = smem, *O = smem + kChunk * kChunk;
  __shared__ Gates gt;
  const int64_t c = blockIdx.x, h = blockIdx.y;
  gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
  const int n = gt.n, dk = int(d.dk), dv = int(d.dv);
  const auto Q = rows(q, c, h, d.nV, d.dk);
  const auto K = rows(k, c, h, d.nV, d.dk);
  const auto U = rows(w.U, c, h, d.nV, d.dv);
  const float* S = state_at(w.S, c, h, d);
  block_mm<4, 4>(
      n, n, dk, Q, [&](int r, int j) { return K(j, r); },
      [&](int i, int j, float qk) { P[i * kChunk + j] = j <= i ? qk * gt.decay(i, j) : 0.0f; });
  block_mm<4, 4>(
      n, dv, dk, Q, [&](int a, int j) { return S[a * dv + j]; },
      [&](int i, int j, float x) { O[i * dv + j] = gt.eg[i] * x; });
  __syncthreads();
  const auto Or = rows(o, c, h, d.nV, d.dv);
  block_mm<4, 4>(
      n, dv, n, [&](int i, int m) { return P[i * kChunk + m]; }, U,
      [&](int i, int j, float x) { Or.at(i, j) = from_f32<bf16>(O[i * dv + j] + x); });
}

// dU0 = P^T dO (into dU). Shared: P.
__global__ void __launch_bounds__(kThreads) gdr_du0_kernel(const bf16* q, const bf16* k, const bf16* d_o,
                                                             const float* g, const float* beta,
                                                             const int32_t* doc_start, Dims d, Work w) {
  extern __shared__ float P[];
  __shared__ Gates gt;
  const int64_t c = blockIdx.x, h = blockIdx.y;
  gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
  const int n = gt.n, dk = int(d.dk), dv = int(d.dv);
  const auto Q = rows(q, c, h, d.nV, d.dk);
  const auto K = rows(k, c, h, d.nV, d.dk);
  const auto dO = rows(d_o, c, h, d.nV, d.dv);
  const auto dU = rows(w.dU, c, h, d.nV, d.dv);
  block_mm<4, 4>(
      n, n, dk, Q, [&](int r, int j) { return K(j, r); },
      [&](int i, int j, float qk) { P[i * kChunk + j] = j <= i ? qk * gt.decay(i, j) : 0.0f; });
  __syncthreads();
  block_mm<4, 4>(
      n, dv, n, [&](int i, int m) { return P[m * kChunk + i]; }, dO, [&](int i, int j, float x) { dU.at(i, j) = x; });
}

// Reverse state pass for head blockIdx.y and state columns [j0, j0 + kBV); dS is the loss gradient w.r.t. the
// state at the end of the current chunk. Per chunk from the last: save dS, du = dU0 + diag(lam) K dS (in place),
// dS <- el dS + (diag(eg) Q)^T dO - W^T du. Shared: dS, scratch (dk, kBV) each.
__global__ void __launch_bounds__(kThreads) gdr_state_bwd_kernel(const bf16* q, const bf16* k, const bf16* d_o,
                                                                   const float* g, const float* beta,
                                                                   const int32_t* doc_start, Dims d, Work w) {
  extern __shared__ float smem[];
  const int dk = int(d.dk);
  float *dS = smem, *tmp = smem + dk * kBV;
  __shared__ Gates gt;
  const int64_t h = blockIdx.y, j0 = int64_t(blockIdx.x) * kBV;
  for (int i = threadIdx.x; i < dk * kBV; i += blockDim.x) dS[i] = 0.0f;
  for (int64_t c = d.chunks - 1; c >= 0; --c) {
    gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
    const int n = gt.n;
    float* dSg = state_at(w.dS, c, h, d) + j0;
    for (int i = threadIdx.x; i < dk * kBV; i += blockDim.x) dSg[i / kBV * d.dv + i % kBV] = dS[i];
    const auto Q = rows(q, c, h, d.nV, d.dk);
    const auto K = rows(k, c, h, d.nV, d.dk);
    const auto Wr = rows(w.W, c, h, d.nV, d.dk);
    const auto dO = rows(d_o + j0, c, h, d.nV, d.dv);
    const auto dU = rows(w.dU + j0, c, h, d.nV, d.dv);
    block_mm<2, 2>(
        n, kBV, dk, K, [&](int a, int j) { return dS[a * kBV + j]; },
        [&](int i, int j, float x) { dU.at(i, j) += gt.lam[i] * x; });
    block_mm<2, 2>(
        dk, kBV, n, [&](int a, int i) { return gt.eg[i] * Q(i, a); }, dO,
        [&](int a, int j, float x) { tmp[a * kBV + j] = x; });
    __syncthreads();
    block_mm<2, 2>(
        dk, kBV, n, [&](int a, int i) { return Wr(i, a); }, dU,
        [&](int a, int j, float x) { dS[a * kBV + j] = gt.el * dS[a * kBV + j] + tmp[a * kBV + j] - x; });
  }
}

// Per chunk, given S (start), dS' (end), u and du: dq, dk, dv, dbeta and dg (the derivation beside each step).
// Shared: QK, KK, Tm, dPD = dP . D, dAD = dA . D (kChunk^2 each), dR (kChunk, dv), Y, Z (kChunk, dk), and
// per-position sums.
__global__ void __launch_bounds__(kThreads) gdr_grad_kernel(const bf16* q, const bf16* k, const bf16* v,
                                                              const bf16* d_o, const float* g, const float* beta,
                                                              const int32_t* doc_start, bf16* dq, bf16* dk_out,
                                                              bf16* dv_out, float* dg, float* dbeta, Dims d,
                                                              Work w) {
  extern __shared__ float smem[];
  constexpr int kSq = kChunk * kChunk;
  const int dk = int(d.dk), dv = int(d.dv);
  float *QK = smem, *KK = QK + kSq, *Tm = KK + kSq, *dPD = Tm + kSq, *dAD = dPD + kSq;
  float *dR = dAD + kSq, *Y = dR + kChunk * dv, *Z = Y + kChunk * dk;
  __shared__ Gates gt;
  __shared__ float dG[kChunk], deg[kChunk], dlam[kChunk], scratch[32];
  const int64_t c = blockIdx.x, h = blockIdx.y;
  gates_load(gt, g, beta, doc_start, d.T, d.nV, c, h);
  const int n = gt.n;
  const auto Q = rows(q, c, h, d.nV, d.dk);
  const auto K = rows(k, c, h, d.nV, d.dk);
  const auto V = rows(v, c, h, d.nV, d.dv);
  const auto dO = rows(d_o, c, h, d.nV, d.dv);
  const auto U = rows(w.U, c, h, d.nV, d.dv);
  const auto dU = rows(w.dU, c, h, d.nV, d.dv);
  const float* S = state_at(w.S, c, h, d);
  const float* dSe = state_at(w.dS, c, h, d);
  const auto Kt = [&](int r, int j) { return K(j, r); };

  // Gram matrices, then A (in dPD's place) and Tm = (I + A)^-1 as in the forward.
  block_mm<4, 4>(n, n, dk, Q, Kt, [&](int i, int j, float x) { QK[i * kChunk + j] = x; });
  block_mm<4, 4>(n, n, dk, K, Kt, [&](int i, int j, float x) { KK[i * kChunk + j] = x; });
  __syncthreads();
  for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
    const int i = e / n, j = e % n;
    dPD[i * kChunk + j] = j < i ? gt.beta[i] * KK[i * kChunk + j] * gt.decay(i, j) : 0.0f;
  }
  invert_unit_lower(dPD, Tm, n);

  // u = Tm R: dR = Tm^T du.  O = ... + P u: dP = dO u^T (lower incl.), stored as dP . D.
  block_mm<4, 4>(
      n, dv, n, [&](int i, int m) { return Tm[m * kChunk + i]; }, dU,
      [&](int i, int j, float x) { dR[i * dv + j] = x; });
  block_mm<4, 4>(
      n, n, dv, dO, [&](int r, int j) { return U(j, r); },
      [&](int i, int j, float x) { dPD[i * kChunk + j] = j <= i ? x * gt.decay(i, j) : 0.0f; });
  __syncthreads();
  // dA = -dR u^T (strictly lower), stored as dA . D.  R = beta V - ...: dV = diag(beta) dR.
  block_mm<4, 4>(
      n, n, dv, [&](int i, int r) { return dR[i * dv + r]; }, [&](int r, int j) { return U(j, r); },
      [&](int i, int j, float x) { dAD[i * kChunk + j] = j < i ? -x * gt.decay(i, j) : 0.0f; });
  const auto dV = rows(dv_out, c, h, d.nV, d.dv);
  for (int e = threadIdx.x; e < n * dv; e += blockDim.x) {
    const int i = e / dv, j = e % dv;
    dV.at(i, j) = from_f32<bf16>(gt.beta[i] * dR[i * dv + j]);
  }
  // Y = dR S^T (R holds -diag(beta eg) K S), Z = u dS'^T (S' holds sum_m lam_m k_m u_m^T).
  block_mm<4, 4>(
      n, dk, dv, [&](int i, int j) { return dR[i * dv + j]; }, [&](int j, int a) { return S[a * dv + j]; },
      [&](int i, int a, float x) { Y[i * dk + a] = x; });
  block_mm<4, 4>(
      n, dk, dv, U, [&](int j, int a) { return dSe[a * dv + j]; }, [&](int i, int a, float x) { Z[i * dk + a] = x; });
  __syncthreads();

  // Per position i: dbeta_i = <dR_i, V_i - eg_i (K S)_i> + sum_j dA_ij KK_ij D_ij; d eg_i (R part) =
  // -beta_i <K_i, Y_i>; dlam_i = <K_i, Z_i>; dG_i from D (in P and A): row sum minus column sum of
  // dP.D.QK + beta_i dA.D.KK. One warp per position.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int i = warp; i < n; i += warps) {
    float rv = 0.0f, ky = 0.0f, kz = 0.0f, ak = 0.0f, zr = 0.0f, zc = 0.0f;
    for (int j = lane; j < dv; j += 32) rv += dR[i * dv + j] * V(i, j);
    for (int a = lane; a < dk; a += 32) {
      ky += K(i, a) * Y[i * dk + a];
      kz += K(i, a) * Z[i * dk + a];
    }
    for (int j = lane; j < n; j += 32) {
      ak += dAD[i * kChunk + j] * KK[i * kChunk + j];
      zr += dPD[i * kChunk + j] * QK[i * kChunk + j] + gt.beta[i] * dAD[i * kChunk + j] * KK[i * kChunk + j];
      zc += dPD[j * kChunk + i] * QK[j * kChunk + i] + gt.beta[j] * dAD[j * kChunk + i] * KK[j * kChunk + i];
    }
    rv = warp_sum(rv), ky = warp_sum(ky), kz = warp_sum(kz), ak = warp_sum(ak), zr = warp_sum(zr), zc = warp_sum(zc);
    if (lane == 0) {
      dbeta[(c * kChunk + i) * d.nV + h] = rv - gt.eg[i] * ky + ak;
      deg[i] = -gt.beta[i] * ky;
      dlam[i] = kz;
      dG[i] = zr - zc;
    }
  }
  // dK = (dP.D)^T Q + (E + E^T) K + diag(lam) Z - diag(beta eg) Y, E = diag(beta) dA.D (from A = beta KK^T.D).
  const auto dK = rows(dk_out, c, h, d.nV, d.dk);
  block_mm<4, 4>(
      n, dk, 2 * n,
      [&](int i, int r) {
        if (r < n) return dPD[r * kChunk + i];
        r -= n;
        return gt.beta[i] * dAD[i * kChunk + r] + gt.beta[r] * dAD[r * kChunk + i];
      },
      [&](int r, int a) { return r < n ? Q(r, a) : K(r - n, a); },
      [&](int i, int a, float x) {
        dK.at(i, a) = from_f32<bf16>(x + gt.lam[i] * Z[i * dk + a] - gt.beta[i] * gt.eg[i] * Y[i * dk + a]);
      });
  __syncthreads();
  // X = dO S^T (into Y): dQ = (dP.D) K + diag(eg) X, and d eg_i (O part) = <Q_i, X_i>.
  block_mm<4, 4>(
      n, dk, dv, dO, [&](int j, int a) { return S[a * dv + j]; }, [&](int i, int a, float x) { Y[i * dk + a] = x; });
  __syncthreads();
  const auto dQ = rows(dq, c, h, d.nV, d.dk);
  block_mm<4, 4>(
      n, dk, n, [&](int i, int j) { return dPD[i * kChunk + j]; }, K,
      [&](int i, int a, float x) { dQ.at(i, a) = from_f32<bf16>(x + gt.eg[i] * Y[i * dk + a]); });
  for (int i = warp; i < n; i += warps) {
    float qx = 0.0f;
    for (int a = lane; a < dk; a += 32) qx += Q(i, a) * Y[i * dk + a];
    qx = warp_sum(qx);
    if (lane == 0) deg[i] += qx;
  }
  // el = eg_l: dG_l += el <dS', S>.
  float ss = 0.0f;
  for (int e = threadIdx.x; e < dk * dv; e += blockDim.x) ss += dSe[e] * S[e];
  ss = block_sum(ss, scratch);
  // dg_t = sum_{i >= t} dG_i, with dG_i = (D part) + eg_i d eg_i and the lam_m = D_lm terms.
  if (threadIdx.x == 0) {
    const int l = n - 1;
    float acc = 0.0f, dl = gt.el * ss;
    for (int m = 0; m < n; ++m) dl += dlam[m] * gt.lam[m];
    for (int i = l; i >= 0; --i) {
      acc += dG[i] + gt.eg[i] * deg[i] - dlam[i] * gt.lam[i] + (i == l ? dl : 0.0f);
      dg[(c * kChunk + i) * d.nV + h] = acc;
    }
  }
}

size_t sq_bytes(int count) {
  return size_t(count) * kChunk * kChunk * sizeof(float);
}

// Lets `kernel` take `bytes` of dynamic shared memory (above the 48 KiB default).
template <class F>
void allow_smem(F kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

Dims dims(int64_t T, int64_t nV, int64_t dk, int64_t dv) {
  return Dims{T, nV, dk, dv, (T + kChunk - 1) / kChunk};
}

// The forward's prep and state passes (shared by the backward).
void run_prep_state(const bf16* k, const bf16* v, const float* g, const float* beta, const int32_t* doc_start,
                    const Dims& d, const Work& w, cudaStream_t st) {
  const dim3 chunks(unsigned(d.chunks), unsigned(d.nV)), cols(unsigned(d.dv / kBV), unsigned(d.nV));
  const size_t prep_smem = sq_bytes(2), state_smem = size_t(d.dk) * kBV * sizeof(float);
  allow_smem(gdr_prep_kernel, prep_smem);
  gdr_prep_kernel<<<chunks, kThreads, prep_smem, st>>>(k, v, g, beta, doc_start, d, w);
  TUNE_CUDA_LAUNCHED();
  gdr_state_kernel<<<cols, kThreads, state_smem, st>>>(k, g, beta, doc_start, d, w);
  TUNE_CUDA_LAUNCHED();
}

void check_dims(int64_t dk, int64_t dv) {
  TUNE_CHECK(gated_delta_rule_supported(dk, dv))
      << "gated_delta_rule: CUDA kernels take head dims 16, 32, 64 or 128, not dk " << dk << " dv " << dv;
}

}  // namespace

bool gated_delta_rule_supported(int64_t dk, int64_t dv) {
  const auto ok = [](int64_t x) { return x == 16 || x == 32 || x == 64 || x == 128; };
  return ok(dk) && ok(dv);
}

size_t gated_delta_rule_workspace_bytes(int64_t T, int64_t nV, int64_t dk, int64_t dv, bool backward) {
  const Dims d = dims(T, nV, dk, dv);
  const int64_t fwd = T * nV * (dk + dv) + d.chunks * nV * dk * dv;
  return size_t(backward ? fwd + T * nV * dv + d.chunks * nV * dk * dv : fwd) * sizeof(float);
}

void gated_delta_rule_fwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, void* o, void* workspace, int64_t T, int64_t nV, int64_t dk,
                          int64_t dv, void* stream) {
  check_dims(dk, dv);
  if (T * nV == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const Dims d = dims(T, nV, dk, dv);
  const Work w = work_split(workspace, d, false);
  const auto* kb = static_cast<const bf16*>(k);
  run_prep_state(kb, static_cast<const bf16*>(v), g, beta, doc_start, d, w, st);
  const dim3 chunks(unsigned(d.chunks), unsigned(nV));
  const size_t out_smem = sq_bytes(1) + size_t(kChunk) * dv * sizeof(float);
  allow_smem(gdr_out_kernel, out_smem);
  gdr_out_kernel<<<chunks, kThreads, out_smem, st>>>(static_cast<const bf16*>(q), kb, g, beta, doc_start,
                                                     static_cast<bf16*>(o), d, w);
  TUNE_CUDA_LAUNCHED();
}

void gated_delta_rule_bwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, const void* d_o, void* dq, void* dk, void* dv, float* dg,
                          float* dbeta, void* workspace, int64_t T, int64_t nV, int64_t dk_, int64_t dv_,
                          void* stream) {
  check_dims(dk_, dv_);
  if (T * nV == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const Dims d = dims(T, nV, dk_, dv_);
  const Work w = work_split(workspace, d, true);
  const auto *qb = static_cast<const bf16*>(q), *kb = static_cast<const bf16*>(k), *vb = static_cast<const bf16*>(v),
             *dob = static_cast<const bf16*>(d_o);
  run_prep_state(kb, vb, g, beta, doc_start, d, w, st);
  const dim3 chunks(unsigned(d.chunks), unsigned(nV)), cols(unsigned(dv_ / kBV), unsigned(nV));
  const size_t du0_smem = sq_bytes(1);
  allow_smem(gdr_du0_kernel, du0_smem);
  gdr_du0_kernel<<<chunks, kThreads, du0_smem, st>>>(qb, kb, dob, g, beta, doc_start, d, w);
  TUNE_CUDA_LAUNCHED();
  const size_t state_smem = 2 * size_t(dk_) * kBV * sizeof(float);
  gdr_state_bwd_kernel<<<cols, kThreads, state_smem, st>>>(qb, kb, dob, g, beta, doc_start, d, w);
  TUNE_CUDA_LAUNCHED();
  const size_t grad_smem = sq_bytes(5) + size_t(kChunk) * (dv_ + 2 * dk_) * sizeof(float);
  allow_smem(gdr_grad_kernel, grad_smem);
  gdr_grad_kernel<<<chunks, kThreads, grad_smem, st>>>(qb, kb, vb, dob, g, beta, doc_start, static_cast<bf16*>(dq),
                                                       static_cast<bf16*>(dk), static_cast<bf16*>(dv), dg, dbeta, d,
                                                       w);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
