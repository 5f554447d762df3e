// gated_delta_rule on CUDA: the chunked (WY / UT-transform) form of ops/gated_delta_rule.h in chunks of 64,
// head dims 64 or 128. Each chunk's tiles go to shared memory by 16-byte cp.async copies and are multiplied
// on the tensor cores (mma.sync m16n8k16: bf16 operands, fp32 accumulation). An fp32 value that enters a
// product (the state, Tm, u, ...) is split into two bf16 planes, x ~ hi + lo (16 significant bits), and the
// product takes hi hi + hi lo + lo hi; only W, which the state passes stream, is stored in bf16 alone,
// rounded like an input. The (I + A)^-1 solve and all accumulation are fp32.
// Forward: prep (per chunk and head: Tm, W, U0) -> state (per head and 16 state columns, chunks in order:
// S, u) -> out (O). Backward: prep (also Tm and dU0 = P^T dO) -> state -> reverse state (dS, du) ->
// grad_intra (dv and the chunk-local parts of dq, dk) -> grad_state (the products with S and dS; dq, dk,
// dbeta, dg). Lab notes and the GPU check script: dev/gated_delta_rule/.
#include <cuda_runtime.h>

#include "kernel_util.cuh"
#include "ops/gated_delta_rule.h"

namespace tune::cuda {

namespace {

constexpr int kC = 64;  // chunk length

struct Dims {
  int64_t T, nV, dk, dv, chunks;
};

// Workspace, per tile t = c nV + h (chunk c, head h). "2," marks two bf16 planes hi, lo with x ~ hi + lo.
struct Work {
  bf16* W;      // (tiles, kC, dk): W = Tm diag(beta eg) K, bf16 only
  float* U0;    // (tiles, kC, dv): U0 = Tm diag(beta) V
  float* gate;  // (tiles, 2, kC) f32: eg, lam
  bf16* u;      // (tiles, 2, dv, kC): u^T, u = U0 - W S
  bf16* S;      // (tiles, 2, dv, dk): S^T, the state at the chunk's start
  // backward only
  bf16* Tm;    // (tiles, 2, kC, kC): Tm = (I + A)^-1
  float* dU0;  // (tiles, kC, dv): P^T dO
  bf16* du;    // (tiles, 2, dv, kC): du^T, the loss gradient of u
  bf16* dS;    // (tiles, 2, dv, dk): dS^T, the state's gradient at the chunk's end
  bf16* dR;    // (tiles, 2, kC, dv): dR = Tm^T du
  float* dQ;   // (tiles, kC, dk): the chunk-local parts of dq and dk
  float* dK;
  float* pos;  // (tiles, 2, kC): per position, dbeta's chunk-local part and dG's part through D
};

// Carves the workspace at `base` (null: only counts); returns the pointers and sets `bytes`.
Work work_split(void* base, const Dims& d, bool backward, size_t* bytes) {
  char* p = static_cast<char*>(base);
  size_t off = 0;
  const auto take = [&](size_t n) {
    char* r = p ? p + off : nullptr;
    off += (n + 255) / 256 * 256;
    return r;
  };
  const size_t t = size_t(d.chunks * d.nV), dk = size_t(d.dk), dv = size_t(d.dv), b2 = 2 * sizeof(bf16);
  Work w{};
  w.W = reinterpret_cast<bf16*>(take(t * kC * dk * sizeof(bf16)));
  w.U0 = reinterpret_cast<float*>(take(t * kC * dv * sizeof(float)));
  w.gate = reinterpret_cast<float*>(take(t * 2 * kC * sizeof(float)));
  w.u = reinterpret_cast<bf16*>(take(t * dv * kC * b2));
  w.S = reinterpret_cast<bf16*>(take(t * dv * dk * b2));
  if (backward) {
    w.Tm = reinterpret_cast<bf16*>(take(t * kC * kC * b2));
    w.dU0 = reinterpret_cast<float*>(take(t * kC * dv * sizeof(float)));
    w.du = reinterpret_cast<bf16*>(take(t * dv * kC * b2));
    w.dS = reinterpret_cast<bf16*>(take(t * dv * dk * b2));
    w.dR = reinterpret_cast<bf16*>(take(t * kC * dv * b2));
    w.dQ = reinterpret_cast<float*>(take(t * kC * dk * sizeof(float)));
    w.dK = reinterpret_cast<float*>(take(t * kC * dk * sizeof(float)));
    w.pos = reinterpret_cast<float*>(take(t * 2 * kC * sizeof(float)));
  }
  *bytes = off;
  return w;
}

// ---- shared-memory copies and tensor-core fragments ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* s, const void* g, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(s)), "l"(g),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed copy groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying ROWS rows of BYTES bytes (a multiple of 16) from g (row stride ldg bytes) to s (row stride
// lds bytes) with THREADS threads; rows >= n are zero-filled.
template <int BYTES, int ROWS, int THREADS>
__device__ __forceinline__ void cp_rows(void* s, int lds, const void* g, int64_t ldg, int n) {
  constexpr int kPer = BYTES / 16, kAll = ROWS * kPer;
#pragma unroll
  for (int e0 = 0; e0 < kAll; e0 += THREADS) {
    const int e = e0 + int(threadIdx.x), i = e / kPer, v = e % kPer;
    if (kAll % THREADS == 0 || e < kAll)
      cp_async16(static_cast<char*>(s) + i * lds + v * 16,
                 static_cast<const char*>(g) + (i < n ? i : 0) * ldg + v * 16, i < n);
  }
}

// A bf16 tile of `rows` rows of d values in shared memory has row stride d + 8: the 8 rows an ldmatrix reads
// then fall in distinct banks.
constexpr int tile_bytes(int rows, int d) {
  return rows * (d + 8) * 2;
}

__device__ __forceinline__ void ldsm(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_t(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c (16 x 8) += a (16 x 16) b (16 x 8).
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Fragments of a row-major bf16 matrix m (row stride ld) in shared memory. Trans false: A(i, k) = m[i][k],
// B(k, n) = m[n][k]; Trans true: A(i, k) = m[k][i], B(k, n) = m[k][n].
// frag_a: the 16 x 16 block of A at (i0, k0). frag_b: the 16 x 8 blocks of B at (k0, n0) in b[0], b[1] and at
// (k0, n0 + 8) in b[2], b[3].
template <bool Trans>
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const bf16* m, int ld, int i0, int k0) {
  const int l = threadIdx.x & 31;
  if constexpr (Trans) {
    ldsm_t(a, m + (k0 + (l & 7) + (l >> 4) * 8) * ld + i0 + (l & 8));
  } else {
    ldsm(a, m + (i0 + (l & 15)) * ld + k0 + (l >> 4) * 8);
  }
}
template <bool Trans>
__device__ __forceinline__ void frag_b(uint32_t (&b)[4], const bf16* m, int ld, int k0, int n0) {
  const int l = threadIdx.x & 31;
  if constexpr (Trans) {
    ldsm_t(b, m + (k0 + (l & 7) + (l & 8)) * ld + n0 + (l >> 4) * 8);
  } else {
    ldsm(b, m + (n0 + (l & 7) + (l >> 4) * 8) * ld + k0 + (l & 8));
  }
}

// An operand of a product: a shared-memory matrix as above, with a second plane `lo` when Split.
template <bool Trans, bool Split>
struct Op {
  static constexpr bool kTrans = Trans, kSplit = Split;
  const bf16 *hi, *lo;
  int ld;
};
template <bool Trans>
__device__ __forceinline__ Op<Trans, false> op(const bf16* m, int ld) {
  return {m, nullptr, ld};
}
// Planes hi at m and lo at m + plane.
template <bool Trans>
__device__ __forceinline__ Op<Trans, true> op2(const bf16* m, int plane, int ld) {
  return {m, m + plane, ld};
}

// acc (the 16 MT x 8 NT block of C at rows i0, columns n0) += A[i0.., k0..k1) B[k0..k1), n0..) for one warp.
template <int MT, int NT, class OA, class OB>
__device__ __forceinline__ void gemm(float (&acc)[MT][NT][4], OA A, OB B, int i0, int n0, int k0, int k1) {
  static_assert(NT % 2 == 0, "B fragments come in pairs of 8-column blocks");
#pragma unroll
  for (int k = k0; k < k1; k += 16) {
    uint32_t ah[MT][4], bh[NT / 2][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) frag_a<OA::kTrans>(ah[mt], A.hi, A.ld, i0 + 16 * mt, k);
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) frag_b<OB::kTrans>(bh[np], B.hi, B.ld, k, n0 + 16 * np);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        mma(acc[mt][nt], ah[mt], bh[nt / 2][(nt & 1) * 2], bh[nt / 2][(nt & 1) * 2 + 1]);
    if constexpr (OB::kSplit) {
      uint32_t bl[NT / 2][4];
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) frag_b<OB::kTrans>(bl[np], B.lo, B.ld, k, n0 + 16 * np);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mma(acc[mt][nt], ah[mt], bl[nt / 2][(nt & 1) * 2], bl[nt / 2][(nt & 1) * 2 + 1]);
    }
    if constexpr (OA::kSplit) {
      uint32_t al[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) frag_a<OA::kTrans>(al[mt], A.lo, A.ld, i0 + 16 * mt, k);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mma(acc[mt][nt], al[mt], bh[nt / 2][(nt & 1) * 2], bh[nt / 2][(nt & 1) * 2 + 1]);
    }
  }
}

// Where element e (0..3) of accumulator block (mt, nt) of a gemm at (i0, n0) sits, for this lane.
__device__ __forceinline__ int acc_row(int i0, int mt, int e) {
  return i0 + 16 * mt + ((threadIdx.x & 31) >> 2) + 8 * (e >> 1);
}
__device__ __forceinline__ int acc_col(int n0, int nt, int e) {
  return n0 + 8 * nt + 2 * (threadIdx.x & 3) + (e & 1);
}

__device__ __forceinline__ uint32_t bits(__nv_bfloat162 x) {
  uint32_t r;
  memcpy(&r, &x, 4);
  return r;
}
__device__ __forceinline__ float2 unpack(uint32_t x) {
  __nv_bfloat162 b;
  memcpy(&b, &x, 4);
  return __bfloat1622float2(b);
}

// (x, y) as bf16x2 words hi and lo with x ~ hi.x + lo.x, y ~ hi.y + lo.y.
__device__ __forceinline__ void split2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  const float2 f = __bfloat1622float2(h);
  hi = bits(h);
  lo = bits(__floats2bfloat162_rn(x - f.x, y - f.y));
}

// Stores (x, y) split at element `at` (even) of the planes m and m + plane.
__device__ __forceinline__ void store_split2(bf16* m, int64_t plane, int64_t at, float x, float y) {
  uint32_t hi, lo;
  split2(x, y, hi, lo);
  *reinterpret_cast<uint32_t*>(m + at) = hi;
  *reinterpret_cast<uint32_t*>(m + plane + at) = lo;
}

__device__ __forceinline__ void store_bf16x2(bf16* m, int64_t at, float x, float y) {
  *reinterpret_cast<__nv_bfloat162*>(m + at) = __floats2bfloat162_rn(x, y);
}

// The A fragments (hi, lo) of the 16-column block kb of a 16 x 8N accumulator c: C's columns become A's k.
template <int N>
__device__ __forceinline__ void acc_to_a(const float (&c)[N][4], int kb, uint32_t (&hi)[4],
                                         uint32_t (&lo)[4]) {
  split2(c[2 * kb][0], c[2 * kb][1], hi[0], lo[0]);
  split2(c[2 * kb][2], c[2 * kb][3], hi[1], lo[1]);
  split2(c[2 * kb + 1][0], c[2 * kb + 1][1], hi[2], lo[2]);
  split2(c[2 * kb + 1][2], c[2 * kb + 1][3], hi[3], lo[3]);
}

// Sum over the four lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// ---- gates and the triangular solve ----

// One chunk's gates, positions i < kC of chunk [c0, c0 + n) of a head (past n: beta, eg, lam 0):
//   G_i = cumsum g; eg_i = exp(G_i) if t_i's document began before c0 (else 0); lam_i = D_{l,i} (l = n - 1);
//   ds_i = doc_start (0 without one, -1 past n), so same(i, j) is ds_i == ds_j.
struct Gates {
  float G[kC], beta[kC], eg[kC], lam[kC];
  int ds[kC];
  int n;
  // D_ij for j <= i (0 across documents).
  __device__ float decay(int i, int j) const { return ds[i] == ds[j] ? __expf(G[i] - G[j]) : 0.0f; }
};

// Fills `s` for chunk c of head h (blockDim >= kC); ends with a barrier.
__device__ void gates_load(Gates& s, const float* g, const float* beta, const int32_t* doc_start,
                           const Dims& d, int64_t c, int64_t h) {
  const int64_t c0 = c * kC;
  const int n = int(d.T - c0 < kC ? d.T - c0 : int64_t(kC)), t = threadIdx.x;
  if (t < kC) {  // warps 0 and 1 whole: scan each warp's half
    const bool in = t < n;
    const int64_t r = (c0 + t) * d.nV + h;
    float x = in ? g[r] : 0.0f;
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, x, o);
      if ((t & 31) >= o) x += y;
    }
    s.G[t] = x;
    s.beta[t] = in ? beta[r] : 0.0f;
    s.ds[t] = in ? (doc_start ? doc_start[c0 + t] : 0) : -1;
  }
  if (t == 0) s.n = n;
  __syncthreads();
  if (t >= 32 && t < kC) s.G[t] += s.G[31];
  __syncthreads();
  if (t < kC) {
    const bool in = t < n;
    s.eg[t] = in && s.ds[t] < c0 ? __expf(s.G[t]) : 0.0f;
    s.lam[t] = in ? s.decay(n - 1, t) : 0.0f;
  }
  __syncthreads();
}

// Tm = (I + A)^-1 for A (kC x kC, row stride kC) strictly lower, in fp32, by 256 threads: the four 16 x 16
// diagonal blocks by forward substitution (a thread per column), then block rows w = 16, 32, 48 in order:
// Tm[w.., :w] = -Tm_ww (A[w.., :w] Tm[:w, :w]) (Tm is lower, so the sums may run over all of [0, w)).
// X: 16 x kC scratch. Ends with a barrier.
template <int W>
__device__ __forceinline__ void invert_block_row(const float* A, float* Tm, float* X) {
  const int c = threadIdx.x & 63, r0 = (threadIdx.x >> 6) * 4;  // column c, rows r0..r0 + 3 of the block row
  if (c < W) {
    float x[4] = {};
#pragma unroll
    for (int m = 0; m < W; m += 4) {
      const float t0 = Tm[m * kC + c], t1 = Tm[(m + 1) * kC + c], t2 = Tm[(m + 2) * kC + c],
                  t3 = Tm[(m + 3) * kC + c];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float4 a = *reinterpret_cast<const float4*>(A + (W + r0 + r) * kC + m);
        x[r] += a.x * t0 + a.y * t1 + a.z * t2 + a.w * t3;
      }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) X[(r0 + r) * kC + c] = x[r];
  }
  __syncthreads();
  if (c < W) {
    float y[4] = {};
#pragma unroll
    for (int m = 0; m < 16; m += 4) {
      const float t0 = X[m * kC + c], t1 = X[(m + 1) * kC + c], t2 = X[(m + 2) * kC + c],
                  t3 = X[(m + 3) * kC + c];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float4 a = *reinterpret_cast<const float4*>(Tm + (W + r0 + r) * kC + W + m);
        y[r] -= a.x * t0 + a.y * t1 + a.z * t2 + a.w * t3;
      }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) Tm[(W + r0 + r) * kC + c] = y[r];
  }
  __syncthreads();
}

__device__ void invert_unit_lower(const float* A, float* Tm, float* X) {
  const int tid = threadIdx.x;
  if (tid < kC) {
    const int o = tid & ~15, j = tid & 15;
    float x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      float s = i == j ? 1.0f : 0.0f;
#pragma unroll
      for (int m = 0; m < i; ++m) s -= A[(o + i) * kC + o + m] * x[m];
      x[i] = s;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) Tm[(o + i) * kC + o + j] = x[i];
  }
  for (int e = tid; e < kC * kC; e += blockDim.x)
    if ((e % kC) / 16 > (e / kC) / 16) Tm[e] = 0.0f;  // above the diagonal blocks
  __syncthreads();
  invert_block_row<16>(A, Tm, X);
  invert_block_row<32>(A, Tm, X);
  invert_block_row<48>(A, Tm, X);
}

// ---- prep: per chunk and head ----

template <int DK, int DV, bool kBwd>
struct PrepSmem {  // dO takes V's space once U0 is done; A and the solve's scratch X share theirs with B
  static constexpr int K = 0, V = K + tile_bytes(kC, DK), O = V, Q = V + tile_bytes(kC, DV),
                       T = Q + (kBwd ? tile_bytes(kC, DK) : 0), A = T + kC * kC * 4, X = A + kC * kC * 4,
                       B = A,
                       bytes = B + (4 * tile_bytes(kC, kC) > (kC + 16) * kC * 4 ? 4 * tile_bytes(kC, kC)
                                                                                : (kC + 16) * kC * 4);
};

// Stores a warp's 16 x 8NT f32 accumulator block at rows i0, columns n0 of a row-major matrix m (row
// stride ld).
template <int NT>
__device__ __forceinline__ void store_f32(float* m, int ld, const float (&acc)[1][NT][4], int i0, int n0) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      *reinterpret_cast<float2*>(m + acc_row(i0, 0, e) * ld + acc_col(n0, nt, e)) =
          make_float2(acc[0][nt][e], acc[0][nt][e + 1]);
}

// A = strict_lower(diag(beta) K K^T . D), Tm = (I + A)^-1, U0 = Tm diag(beta) V, W = Tm diag(beta eg) K and
// the gates; the backward's version also keeps Tm and computes dU0 = P^T dO, P = lower_incl(Q K^T . D).
// Shared: the K, V (, Q, dO) tiles, A and Tm in f32, and four bf16 planes: Tm diag(beta) and Tm diag(beta eg)
// split (later P split). 8 warps, warp w on rows [16 (w % 4), +16) and the (w / 4)-th half of the columns.
template <int DK, int DV, bool kBwd>
__global__ void __launch_bounds__(256)
    gdr_prep_kernel(const bf16* q, const bf16* k, const bf16* v, const bf16* d_o, const float* g,
                    const float* beta, const int32_t* doc_start, Dims d, Work w) {
  using L = PrepSmem<DK, DV, kBwd>;
  constexpr int kThreads = 256, ldk = DK + 8, ldv = DV + 8, ldc = kC + 8, plane = kC * ldc;
  extern __shared__ __align__(16) char smem[];
  __shared__ Gates gt;
  bf16 *sK = reinterpret_cast<bf16*>(smem + L::K), *sV = reinterpret_cast<bf16*>(smem + L::V);
  bf16 *sQ = reinterpret_cast<bf16*>(smem + L::Q), *sO = reinterpret_cast<bf16*>(smem + L::O);
  float *sA = reinterpret_cast<float*>(smem + L::A), *sT = reinterpret_cast<float*>(smem + L::T);
  bf16* sB = reinterpret_cast<bf16*>(smem + L::B);
  const int64_t c = blockIdx.x, h = blockIdx.y, tile = c * d.nV + h, row0 = c * kC * d.nV + h;
  const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
  cp_rows<DK * 2, kC, kThreads>(sK, ldk * 2, k + row0 * DK, d.nV * DK * 2, n);
  cp_commit();  // K first: A and its inverse need nothing else
  cp_rows<DV * 2, kC, kThreads>(sV, ldv * 2, v + row0 * DV, d.nV * DV * 2, n);
  if constexpr (kBwd) cp_rows<DK * 2, kC, kThreads>(sQ, ldk * 2, q + row0 * DK, d.nV * DK * 2, n);
  cp_commit();
  gates_load(gt, g, beta, doc_start, d, c, h);
  cp_wait<1>();
  __syncthreads();
  const int warp = threadIdx.x >> 5, i0 = 16 * (warp & 3), half = warp >> 2;
  {
    float acc[1][4][4] = {};
    gemm(acc, op<false>(sK, ldk), op<false>(sK, ldk), i0, 32 * half, 0, DK);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = acc_row(i0, 0, e), j = acc_col(32 * half, nt, e);
        sA[i * kC + j] = j < i ? gt.beta[i] * acc[0][nt][e] * gt.decay(i, j) : 0.0f;
      }
  }
  __syncthreads();
  invert_unit_lower(sA, sT, reinterpret_cast<float*>(smem + L::X));
  for (int e = threadIdx.x; e < kC * kC / 2; e += kThreads) {
    const int i = 2 * e / kC, m = 2 * e % kC;
    const float x = sT[2 * e] * gt.beta[m], y = sT[2 * e + 1] * gt.beta[m + 1];
    store_split2(sB, plane, i * ldc + m, x, y);
    store_split2(sB + 2 * plane, plane, i * ldc + m, x * gt.eg[m], y * gt.eg[m + 1]);
    if constexpr (kBwd) store_split2(w.Tm + tile * 2 * kC * kC, kC * kC, 2 * e, sT[2 * e], sT[2 * e + 1]);
  }
  if (threadIdx.x < kC) {
    w.gate[tile * 2 * kC + threadIdx.x] = gt.eg[threadIdx.x];
    w.gate[tile * 2 * kC + kC + threadIdx.x] = gt.lam[threadIdx.x];
  }
  cp_wait<0>();
  __syncthreads();
  {
    float acc[1][DV / 16][4] = {};
    gemm(acc, op2<false>(sB, plane, ldc), op<true>(sV, ldv), i0, half * DV / 2, 0, kC);
    store_f32(w.U0 + tile * kC * DV, DV, acc, i0, half * DV / 2);
  }
  {
    float acc[1][DK / 16][4] = {};
    gemm(acc, op2<false>(sB + 2 * plane, plane, ldc), op<true>(sK, ldk), i0, half * DK / 2, 0, kC);
    bf16* W = w.W + tile * kC * DK;
#pragma unroll
    for (int nt = 0; nt < DK / 16; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        store_bf16x2(W, acc_row(i0, 0, e) * DK + acc_col(half * DK / 2, nt, e), acc[0][nt][e],
                     acc[0][nt][e + 1]);
  }
  if constexpr (kBwd) {
    __syncthreads();  // the U0 and W products are done with sB and sV
    cp_rows<DV * 2, kC, kThreads>(sO, ldv * 2, d_o + row0 * DV, d.nV * DV * 2, n);
    cp_commit();
    {
      float acc[1][4][4] = {};
      gemm(acc, op<false>(sQ, ldk), op<false>(sK, ldk), i0, 32 * half, 0, DK);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; e += 2) {
          const int i = acc_row(i0, 0, e), j = acc_col(32 * half, nt, e);
          store_split2(sB, plane, i * ldc + j, j <= i ? acc[0][nt][e] * gt.decay(i, j) : 0.0f,
                       j + 1 <= i ? acc[0][nt][e + 1] * gt.decay(i, j + 1) : 0.0f);
        }
    }
    cp_wait<0>();
    __syncthreads();
    float acc[1][DV / 16][4] = {};
    gemm(acc, op2<true>(sB, plane, ldc), op<true>(sO, ldv), i0, half * DV / 2, 0, kC);
    store_f32(w.dU0 + tile * kC * DV, DV, acc, i0, half * DV / 2);
  }
}

// ---- the state passes: per head and 16 state columns, chunks in order ----
// Block (blockIdx.x, h) owns columns [j0, j0 + 16) of head h's (dk, dv) state, held transposed (16 x dk) in
// the accumulators of dk / 16 warps, warp w on state rows [16 w, 16 w + 16). Per chunk, a product over dk
// (S^T W^T) adds the warps' partial sums through shared memory: each warp finishes 64 / (dk / 16) of the
// chunk's positions and leaves them (split) in shared memory, from where every warp takes all 64 positions
// for its product over them (u^T diag(lam) K). The next chunk's tiles load during this chunk's math.

// Stages a warp's 16 x 16 block of a transposed state (columns aw..) in the split planes st (16 x DK, row
// stride DK + 8, plane 16 (DK + 8)).
template <int DK>
__device__ __forceinline__ void stage_state(bf16* st, const float (&s)[2][4], int aw) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      store_split2(st, 16 * (DK + 8), acc_row(0, 0, e) * (DK + 8) + acc_col(aw, nt, e), s[nt][e],
                   s[nt][e + 1]);
}

// Copies split planes of 16 x COLS staged in shared memory (row stride COLS + 8) to rows [j0, j0 + 16) of the
// planes of a (rows, COLS) matrix at g (plane stride gp), 16 bytes per thread and step.
template <int COLS, int THREADS>
__device__ __forceinline__ void copy_rows16(bf16* g, int64_t gp, int j0, const bf16* st) {
  constexpr int kPer = COLS / 8, kAll = 2 * 16 * kPer;
#pragma unroll
  for (int e0 = 0; e0 < kAll; e0 += THREADS) {
    const int e = e0 + int(threadIdx.x), pl = e / (16 * kPer), r = e / kPer % 16, v = e % kPer;
    if (kAll % THREADS == 0 || e < kAll)
      *reinterpret_cast<uint4*>(g + pl * gp + int64_t(j0 + r) * COLS + v * 8) =
          *reinterpret_cast<const uint4*>(st + (pl * 16 + r) * (COLS + 8) + v * 8);
  }
}

// p (16 x 64) = X^T M^T over this warp's 16 state rows: X^T the accumulators x (16 x 16, split), M the tile m
// (kC x DK, rows = positions) at columns [aw, aw + 16).
__device__ __forceinline__ void partial_xt_mt(float (&p)[8][4], const float (&x)[2][4], const bf16* m, int ld,
                                              int aw) {
  uint32_t ah[4], al[4];
  acc_to_a(x, 0, ah, al);
#pragma unroll
  for (int np = 0; np < 4; ++np) {
    uint32_t b[4];
    frag_b<false>(b, m, ld, aw, 16 * np);
    p[2 * np][0] = p[2 * np][1] = p[2 * np][2] = p[2 * np][3] = 0.0f;
    p[2 * np + 1][0] = p[2 * np + 1][1] = p[2 * np + 1][2] = p[2 * np + 1][3] = 0.0f;
    mma(p[2 * np], ah, b[0], b[1]);
    mma(p[2 * np], al, b[0], b[1]);
    mma(p[2 * np + 1], ah, b[2], b[3]);
    mma(p[2 * np + 1], al, b[2], b[3]);
  }
}

// acc (16 x 16) += Y^T M over the chunk's positions: Y^T (16 x 64) the split planes y (row stride kC + 8,
// plane yp), M the tile m (kC x DK) at columns [aw, aw + 16).
__device__ __forceinline__ void add_yt_m(float (&acc)[2][4], const bf16* y, int yp, const bf16* m, int ld,
                                         int aw) {
#pragma unroll
  for (int kb = 0; kb < 4; ++kb) {
    uint32_t ah[4], al[4], b[4];
    frag_a<false>(ah, y, kC + 8, 0, 16 * kb);
    frag_a<false>(al, y + yp, kC + 8, 0, 16 * kb);
    frag_b<true>(b, m, ld, 16 * kb, aw);
    mma(acc[0], ah, b[0], b[1]);
    mma(acc[0], al, b[0], b[1]);
    mma(acc[1], ah, b[2], b[3]);
    mma(acc[1], al, b[2], b[3]);
  }
}

// Writes a warp's 16 x 64 partial block p to red ([warp][block][lane] float4).
__device__ __forceinline__ void red_put(float4* red, const float (&p)[8][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
    red[(warp * 8 + nt) * 32 + lane] = make_float4(p[nt][0], p[nt][1], p[nt][2], p[nt][3]);
}

// The sum over NW warps of block nt of red, for this lane.
template <int NW>
__device__ __forceinline__ float4 red_get(const float4* red, int nt) {
  const int lane = threadIdx.x & 31;
  float4 a = red[nt * 32 + lane];
#pragma unroll
  for (int w = 1; w < NW; ++w) {
    const float4 b = red[(w * 8 + nt) * 32 + lane];
    a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
  }
  return a;
}

template <int DK>
struct StateFwdSmem {
  static constexpr int NW = DK / 16;
  static constexpr int W = 0, K = W + tile_bytes(kC, DK), U = K + tile_bytes(kC, DK), G = U + kC * 20 * 4,
                       buf = G + 2 * kC * 4, red = 2 * buf, X = red + NW * 8 * 32 * 16,
                       St = X + 2 * tile_bytes(16, kC), Uo = St + 2 * tile_bytes(16, DK),
                       bytes = Uo + 2 * tile_bytes(16, kC);
};

// Per chunk: store S (its start), u = U0 - W S (U0's 16 columns staged with row stride 20 floats), store u,
// then S <- el S + K^T diag(lam) u. Shared, double-buffered: W, K, the U0 slice, eg and lam; and the partial
// sums, u^T diag(lam) (split), and S^T and u^T (split) on their way to the workspace in 16-byte stores.
template <int DK, int DV>
__global__ void __launch_bounds__(2 * DK, 1) gdr_state_fwd_kernel(const bf16* k, Dims d, Work w) {
  using L = StateFwdSmem<DK>;
  constexpr int NW = L::NW, PT = 8 / NW, kThreads = 32 * NW, ldk = DK + 8, ldc = kC + 8, xp = 16 * ldc;
  extern __shared__ __align__(16) char smem[];
  float4* red = reinterpret_cast<float4*>(smem + L::red);
  bf16 *sX = reinterpret_cast<bf16*>(smem + L::X), *sSt = reinterpret_cast<bf16*>(smem + L::St),
       *sUo = reinterpret_cast<bf16*>(smem + L::Uo);
  const int64_t h = blockIdx.y;
  const int j0 = 16 * blockIdx.x, warp = threadIdx.x >> 5, aw = 16 * warp;
  const auto issue = [&](int64_t c) {
    char* b = smem + (c & 1) * L::buf;
    const int64_t tile = c * d.nV + h;
    const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
    cp_rows<DK * 2, kC, kThreads>(b + L::W, ldk * 2, w.W + tile * kC * DK, DK * 2, kC);
    cp_rows<DK * 2, kC, kThreads>(b + L::K, ldk * 2, k + (c * kC * d.nV + h) * DK, d.nV * DK * 2, n);
    cp_rows<64, kC, kThreads>(b + L::U, 80, w.U0 + tile * kC * DV + j0, DV * 4, kC);
    cp_rows<2 * kC * 4, 1, kThreads>(b + L::G, 0, w.gate + tile * 2 * kC, 0, 1);
    cp_commit();
  };
  float s[2][4] = {};
  issue(0);
  for (int64_t c = 0; c < d.chunks; ++c) {
    cp_wait<0>();
    __syncthreads();  // chunk c's tiles are visible; every warp is done with chunk c - 1
    if (c + 1 < d.chunks) issue(c + 1);
    const char* b = smem + (c & 1) * L::buf;
    const bf16 *sW = reinterpret_cast<const bf16*>(b + L::W), *sK = reinterpret_cast<const bf16*>(b + L::K);
    const float *sU = reinterpret_cast<const float*>(b + L::U),
                *eg = reinterpret_cast<const float*>(b + L::G);
    const float* lam = eg + kC;
    const int64_t tile = c * d.nV + h;
    const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
    stage_state<DK>(sSt, s, aw);
    {
      float p[8][4];
      partial_xt_mt(p, s, sW, ldk, aw);
      red_put(red, p);
    }
    __syncthreads();
    copy_rows16<DK, kThreads>(w.S + tile * 2 * DV * DK, DV * DK, j0, sSt);
#pragma unroll
    for (int x = 0; x < PT; ++x) {  // this warp's positions: u^T = U0^T - (S^T W^T), stored, then diag(lam)
      const int nt = PT * warp + x;
      const float4 r = red_get<NW>(red, nt);
      const float ws[4] = {r.x, r.y, r.z, r.w};
      float u[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) u[e] = sU[acc_col(0, nt, e) * 20 + acc_row(0, 0, e)] - ws[e];
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int j = acc_row(0, 0, e), i = acc_col(0, nt, e);
        store_split2(sUo, xp, j * ldc + i, u[e], u[e + 1]);
        store_split2(sX, xp, j * ldc + i, lam[i] * u[e], lam[i + 1] * u[e + 1]);
      }
    }
    const float el = eg[n - 1];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] *= el;
    __syncthreads();
    copy_rows16<kC, kThreads>(w.u + tile * 2 * DV * kC, DV * kC, j0, sUo);
    add_yt_m(s, sX, xp, sK, ldk, aw);
  }
}

template <int DK>
struct StateBwdSmem {
  static constexpr int NW = DK / 16;
  static constexpr int K = 0, Q = K + tile_bytes(kC, DK), W = Q + tile_bytes(kC, DK),
                       O = W + tile_bytes(kC, DK), U = O + tile_bytes(kC, 16), G = U + kC * 20 * 4,
                       buf = G + 2 * kC * 4, red = 2 * buf, X = red + NW * 8 * 32 * 16,
                       E = X + 2 * tile_bytes(16, kC), St = E + 2 * tile_bytes(16, kC),
                       Uo = St + 2 * tile_bytes(16, DK), bytes = Uo + 2 * tile_bytes(16, kC);
};

// Reverse state pass; dS is the loss gradient of the state at the current chunk's end (0 after the last). Per
// chunk from the last: store dS, du = dU0 + diag(lam) K dS, store du, dS <- el dS + Q^T diag(eg) dO - W^T du.
// Shared, double-buffered: K, Q, W, the dO and dU0 slices, eg and lam; and the partial sums, -du^T and
// dO^T diag(eg) (split), and dS^T and du^T (split) on their way to the workspace.
template <int DK, int DV>
__global__ void __launch_bounds__(2 * DK, 1)
    gdr_state_bwd_kernel(const bf16* q, const bf16* k, const bf16* d_o, Dims d, Work w) {
  using L = StateBwdSmem<DK>;
  constexpr int NW = L::NW, PT = 8 / NW, kThreads = 32 * NW, ldk = DK + 8, ldc = kC + 8, xp = 16 * ldc;
  extern __shared__ __align__(16) char smem[];
  float4* red = reinterpret_cast<float4*>(smem + L::red);
  bf16 *sX = reinterpret_cast<bf16*>(smem + L::X), *sE = reinterpret_cast<bf16*>(smem + L::E),
       *sSt = reinterpret_cast<bf16*>(smem + L::St), *sUo = reinterpret_cast<bf16*>(smem + L::Uo);
  const int64_t h = blockIdx.y;
  const int j0 = 16 * blockIdx.x, warp = threadIdx.x >> 5, aw = 16 * warp;
  const auto issue = [&](int64_t c) {
    char* b = smem + (c & 1) * L::buf;
    const int64_t tile = c * d.nV + h, row0 = c * kC * d.nV + h;
    const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
    cp_rows<DK * 2, kC, kThreads>(b + L::K, ldk * 2, k + row0 * DK, d.nV * DK * 2, n);
    cp_rows<DK * 2, kC, kThreads>(b + L::Q, ldk * 2, q + row0 * DK, d.nV * DK * 2, n);
    cp_rows<DK * 2, kC, kThreads>(b + L::W, ldk * 2, w.W + tile * kC * DK, DK * 2, kC);
    cp_rows<32, kC, kThreads>(b + L::O, 48, d_o + row0 * DV + j0, d.nV * DV * 2, n);
    cp_rows<64, kC, kThreads>(b + L::U, 80, w.dU0 + tile * kC * DV + j0, DV * 4, kC);
    cp_rows<2 * kC * 4, 1, kThreads>(b + L::G, 0, w.gate + tile * 2 * kC, 0, 1);
    cp_commit();
  };
  float s[2][4] = {};
  issue(d.chunks - 1);
  for (int64_t c = d.chunks - 1; c >= 0; --c) {
    cp_wait<0>();
    __syncthreads();
    if (c > 0) issue(c - 1);
    const char* b = smem + (c & 1) * L::buf;
    const bf16 *sK = reinterpret_cast<const bf16*>(b + L::K), *sQ = reinterpret_cast<const bf16*>(b + L::Q);
    const bf16 *sW = reinterpret_cast<const bf16*>(b + L::W), *sO = reinterpret_cast<const bf16*>(b + L::O);
    const float *sU = reinterpret_cast<const float*>(b + L::U),
                *eg = reinterpret_cast<const float*>(b + L::G);
    const float* lam = eg + kC;
    const int64_t tile = c * d.nV + h;
    const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
    stage_state<DK>(sSt, s, aw);
    {
      float p[8][4];
      partial_xt_mt(p, s, sK, ldk, aw);
      red_put(red, p);
    }
    for (int e = threadIdx.x; e < 16 * kC / 2; e += kThreads) {  // dO^T diag(eg), split: (16, kC)
      const int j = e / (kC / 2), i = 2 * (e % (kC / 2));
      store_split2(sE, xp, j * ldc + i, eg[i] * __bfloat162float(sO[i * 24 + j]),
                   eg[i + 1] * __bfloat162float(sO[(i + 1) * 24 + j]));
    }
    __syncthreads();
    copy_rows16<DK, kThreads>(w.dS + tile * 2 * DV * DK, DV * DK, j0, sSt);
#pragma unroll
    for (int x = 0; x < PT; ++x) {  // this warp's positions: du^T = dU0^T + (dS^T K^T) diag(lam), stored
      const int nt = PT * warp + x;
      const float4 r = red_get<NW>(red, nt);
      const float ks[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int j = acc_row(0, 0, e), i = acc_col(0, nt, e);
        const float u0 = sU[i * 20 + j] + lam[i] * ks[e], u1 = sU[(i + 1) * 20 + j] + lam[i + 1] * ks[e + 1];
        store_split2(sUo, xp, j * ldc + i, u0, u1);
        store_split2(sX, xp, j * ldc + i, -u0, -u1);
      }
    }
    float acc[2][4] = {};
    add_yt_m(acc, sE, xp, sQ, ldk, aw);
    __syncthreads();
    copy_rows16<kC, kThreads>(w.du + tile * 2 * DV * kC, DV * kC, j0, sUo);
    add_yt_m(acc, sX, xp, sW, ldk, aw);
    const float el = eg[n - 1];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = el * s[nt][e] + acc[nt][e];
  }
}

// ---- out: per chunk, head and 64 output columns ----

template <int DK>
struct OutSmem {
  static constexpr int Q = 0, K = Q + tile_bytes(kC, DK), S = K + tile_bytes(kC, DK),
                       U = S + 2 * tile_bytes(64, DK), P = U + 2 * tile_bytes(64, kC),
                       bytes = P + 2 * tile_bytes(kC, kC);
};

// O = diag(eg) Q S + P u, P = lower_incl(Q K^T . D), for columns [64 z, 64 z + 64) (z = blockIdx.z). Shared:
// Q, K, the S^T and u^T rows of those columns (split), P (split). 8 warps, warp w on rows [16 (w % 4), +16)
// and columns [32 (w / 4), +32).
template <int DK, int DV>
__global__ void __launch_bounds__(256)
    gdr_out_kernel(const bf16* q, const bf16* k, const float* g, const float* beta, const int32_t* doc_start,
                   bf16* o, Dims d, Work w) {
  using L = OutSmem<DK>;
  constexpr int kThreads = 256, ldk = DK + 8, ldc = kC + 8, sp = 64 * ldk, up = 64 * ldc, pp = kC * ldc;
  extern __shared__ __align__(16) char smem[];
  __shared__ Gates gt;
  bf16 *sQ = reinterpret_cast<bf16*>(smem + L::Q), *sK = reinterpret_cast<bf16*>(smem + L::K);
  bf16 *sS = reinterpret_cast<bf16*>(smem + L::S), *sU = reinterpret_cast<bf16*>(smem + L::U);
  bf16* sP = reinterpret_cast<bf16*>(smem + L::P);
  const int64_t c = blockIdx.x, h = blockIdx.y, tile = c * d.nV + h, row0 = c * kC * d.nV + h;
  const int jz = 64 * blockIdx.z;
  const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
  cp_rows<DK * 2, kC, kThreads>(sQ, ldk * 2, q + row0 * DK, d.nV * DK * 2, n);
  cp_rows<DK * 2, kC, kThreads>(sK, ldk * 2, k + row0 * DK, d.nV * DK * 2, n);
  cp_commit();  // Q and K first, for P
  for (int pl = 0; pl < 2; ++pl) {
    cp_rows<DK * 2, 64, kThreads>(sS + pl * sp, ldk * 2, w.S + (tile * 2 + pl) * DV * DK + jz * DK, DK * 2,
                                  64);
    cp_rows<kC * 2, 64, kThreads>(sU + pl * up, ldc * 2, w.u + (tile * 2 + pl) * DV * kC + jz * kC, kC * 2,
                                  64);
  }
  cp_commit();
  gates_load(gt, g, beta, doc_start, d, c, h);
  cp_wait<1>();
  __syncthreads();
  const int i0 = 16 * ((threadIdx.x >> 5) & 3), n0 = 32 * (threadIdx.x >> 7);
  {
    float acc[1][4][4] = {};
    gemm(acc, op<false>(sQ, ldk), op<false>(sK, ldk), i0, n0, 0, DK);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int i = acc_row(i0, 0, e), j = acc_col(n0, nt, e);
        store_split2(sP, pp, i * ldc + j, j <= i ? acc[0][nt][e] * gt.decay(i, j) : 0.0f,
                     j + 1 <= i ? acc[0][nt][e + 1] * gt.decay(i, j + 1) : 0.0f);
      }
  }
  cp_wait<0>();
  __syncthreads();  // P is complete, S and u have landed
  float acc[1][4][4] = {};
  gemm(acc, op<false>(sQ, ldk), op2<false>(sS, sp, ldk), i0, n0, 0, DK);
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][nt][e] *= gt.eg[acc_row(i0, 0, e)];
  gemm(acc, op2<false>(sP, pp, ldc), op2<false>(sU, up, ldc), i0, n0, 0, kC);
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int i = acc_row(i0, 0, e);
      if (i < n)
        store_bf16x2(o, (row0 + i * d.nV) * DV + jz + acc_col(n0, nt, e), acc[0][nt][e], acc[0][nt][e + 1]);
    }
}

// ---- gradients per chunk and head ----
// 8 warps, warp w on rows [16 (w % 4), +16) and the (w / 4)-th half of the columns.

template <int DK, int DV>
struct IntraSmem {
  static constexpr int Q = 0, K = Q + tile_bytes(kC, DK), O = K + tile_bytes(kC, DK),
                       U = O + tile_bytes(kC, DV), dU = U + 2 * tile_bytes(DV, kC),
                       T = dU + 2 * tile_bytes(DV, kC), R = dU,
                       E = dU + (2 * tile_bytes(DV, kC) + 2 * tile_bytes(kC, kC) > 2 * tile_bytes(kC, DV)
                                     ? 2 * tile_bytes(DV, kC) + 2 * tile_bytes(kC, kC)
                                     : 2 * tile_bytes(kC, DV)),
                       PD = E + kC * (kC + 1) * 4, M = PD + 2 * tile_bytes(kC, kC),
                       sums = M + 2 * tile_bytes(kC, kC), bytes = sums + 10 * kC * 4;
};

// The chunk-local gradients, from u and du (with u = Tm R, R = diag(beta) (V - diag(eg) K S) and
// O = diag(eg) Q S + P u):
//   dR = Tm^T du: dv = diag(beta) dR, rv_i = <dR_i, V_i>;
//   dPD = lower_incl(dO u^T) . D, dAD = strict_lower(-dR u^T) . D (from (I + A) u = R);
//   per position: ak_i = sum_j dAD_ij KK_ij, and dG_i through D = row sum - column sum of
//   F = dPD . QK + diag(beta) dAD . KK;
//   dq_local = dPD K, dk_local = dPD^T Q + (E + E^T) K with E = diag(beta) dAD.
// Shared: Q, K, dO; u^T (split); du^T and Tm (split), later dR (split); E (f32, row stride kC + 1); dPD and
// E + E^T (split); partial sums.
template <int DK, int DV>
__global__ void __launch_bounds__(256)
    gdr_grad_intra_kernel(const bf16* q, const bf16* k, const bf16* v, const bf16* d_o, const float* g,
                          const float* beta, const int32_t* doc_start, bf16* dv_out, Dims d, Work w) {
  using L = IntraSmem<DK, DV>;
  constexpr int kThreads = 256, ldk = DK + 8, ldv = DV + 8, ldc = kC + 8, up = DV * ldc, cp = kC * ldc,
                rp = kC * ldv;
  extern __shared__ __align__(16) char smem[];
  __shared__ Gates gt;
  bf16 *sQ = reinterpret_cast<bf16*>(smem + L::Q), *sK = reinterpret_cast<bf16*>(smem + L::K);
  bf16 *sO = reinterpret_cast<bf16*>(smem + L::O), *sU = reinterpret_cast<bf16*>(smem + L::U);
  bf16 *sdU = reinterpret_cast<bf16*>(smem + L::dU), *sT = reinterpret_cast<bf16*>(smem + L::T);
  bf16* sR = reinterpret_cast<bf16*>(smem + L::R);
  float* sE = reinterpret_cast<float*>(smem + L::E);
  bf16 *sPD = reinterpret_cast<bf16*>(smem + L::PD), *sM = reinterpret_cast<bf16*>(smem + L::M);
  float *rowV = reinterpret_cast<float*>(smem + L::sums), *rowF = rowV + 2 * kC, *rowH = rowF + 2 * kC,
        *colF = rowH + 2 * kC;
  const int64_t c = blockIdx.x, h = blockIdx.y, tile = c * d.nV + h, row0 = c * kC * d.nV + h;
  const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
  cp_rows<kC * 2, 2 * DV, kThreads>(sdU, ldc * 2, w.du + tile * 2 * DV * kC, kC * 2, 2 * DV);
  cp_rows<kC * 2, 2 * kC, kThreads>(sT, ldc * 2, w.Tm + tile * 2 * kC * kC, kC * 2, 2 * kC);
  cp_commit();  // du and Tm first, for dR
  cp_rows<DK * 2, kC, kThreads>(sQ, ldk * 2, q + row0 * DK, d.nV * DK * 2, n);
  cp_rows<DK * 2, kC, kThreads>(sK, ldk * 2, k + row0 * DK, d.nV * DK * 2, n);
  cp_rows<DV * 2, kC, kThreads>(sO, ldv * 2, d_o + row0 * DV, d.nV * DV * 2, n);
  cp_rows<kC * 2, 2 * DV, kThreads>(sU, ldc * 2, w.u + tile * 2 * DV * kC, kC * 2, 2 * DV);
  cp_commit();
  gates_load(gt, g, beta, doc_start, d, c, h);
  cp_wait<1>();
  __syncthreads();
  const int warp = threadIdx.x >> 5, wr = warp & 3, wc = warp >> 2, i0 = 16 * wr, lane = threadIdx.x & 31;
  {  // dR = Tm^T du, on columns [wc DV/2, +DV/2)
    constexpr int NR = DV / 16;
    const int n0 = wc * DV / 2;
    float r[1][NR][4] = {};
    gemm(r, op2<true>(sT, cp, ldc), op2<false>(sdU, up, ldc), i0, n0, 0, kC);
    cp_wait<0>();
    __syncthreads();  // Tm and du^T are read; their space takes dR
#pragma unroll
    for (int nt = 0; nt < NR; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        store_split2(sR, rp, acc_row(i0, 0, e) * ldv + acc_col(n0, nt, e), r[0][nt][e], r[0][nt][e + 1]);
  }
  __syncthreads();
  // dR to the workspace, dv = diag(beta) dR and rv_i = <dR_i, V_i>, 8 values per thread and step (DV / 8
  // consecutive threads per row, which the shuffles sum).
  for (int e0 = 0; e0 < kC * DV / 8; e0 += kThreads) {
    constexpr int kPer = DV / 8;
    const int e = e0 + int(threadIdx.x), i = e / kPer, j = 8 * (e % kPer);
    const uint4 hi = *reinterpret_cast<const uint4*>(sR + i * ldv + j),
                lo = *reinterpret_cast<const uint4*>(sR + rp + i * ldv + j);
    bf16* dRg = w.dR + tile * 2 * kC * DV + i * DV + j;
    *reinterpret_cast<uint4*>(dRg) = hi;
    *reinterpret_cast<uint4*>(dRg + kC * DV) = lo;
    float rv = 0.0f;
    if (i < n) {
      const int64_t at = (row0 + i * d.nV) * DV + j;
      const uint4 vv = *reinterpret_cast<const uint4*>(v + at);
      const uint32_t hw[4] = {hi.x, hi.y, hi.z, hi.w}, lw[4] = {lo.x, lo.y, lo.z, lo.w},
                     vw[4] = {vv.x, vv.y, vv.z, vv.w};
      uint32_t out[4];
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const float2 rh = unpack(hw[x]), rl = unpack(lw[x]), vf = unpack(vw[x]);
        const float r0 = rh.x + rl.x, r1 = rh.y + rl.y;
        rv += r0 * vf.x + r1 * vf.y;
        out[x] = bits(__floats2bfloat162_rn(gt.beta[i] * r0, gt.beta[i] * r1));
      }
      *reinterpret_cast<uint4*>(dv_out + at) = make_uint4(out[0], out[1], out[2], out[3]);
    }
#pragma unroll
    for (int o = kPer / 2; o > 0; o >>= 1) rv += __shfl_xor_sync(0xffffffffu, rv, o);
    if (j == 0) rowV[i] = rv;
  }
  {  // 64 x 64 blocks, columns [32 wc, +32): dO u^T, dR u^T, Q K^T, K K^T
    const int n0 = 32 * wc;
    float p[1][4][4] = {}, a[1][4][4] = {}, qk[1][4][4] = {}, kk[1][4][4] = {};
    gemm(p, op<false>(sO, ldv), op2<true>(sU, up, ldc), i0, n0, 0, DV);
    gemm(a, op2<false>(sR, rp, ldv), op2<true>(sU, up, ldc), i0, n0, 0, DV);
    gemm(qk, op<false>(sQ, ldk), op<false>(sK, ldk), i0, n0, 0, DK);
    gemm(kk, op<false>(sK, ldk), op<false>(sK, ldk), i0, n0, 0, DK);
    float rf[2] = {0.0f, 0.0f}, rh[2] = {0.0f, 0.0f}, cf[4][2] = {};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      float pd[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = acc_row(i0, 0, e), j = acc_col(n0, nt, e);
        const float D = j <= i ? gt.decay(i, j) : 0.0f;
        const float ad = j < i ? -a[0][nt][e] * D : 0.0f;
        pd[e] = p[0][nt][e] * D;
        const float f = pd[e] * qk[0][nt][e] + gt.beta[i] * ad * kk[0][nt][e];
        rf[e >> 1] += f, rh[e >> 1] += ad * kk[0][nt][e], cf[nt][e & 1] += f;
        sE[i * (kC + 1) + j] = gt.beta[i] * ad;
      }
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        store_split2(sPD, cp, acc_row(i0, 0, e) * ldc + acc_col(n0, nt, e), pd[e], pd[e + 1]);
    }
#pragma unroll
    for (int x = 0; x < 2; ++x) rf[x] = quad_sum(rf[x]), rh[x] = quad_sum(rh[x]);
    if ((lane & 3) == 0)
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        const int i = acc_row(i0, 0, 2 * x);
        rowF[wc * kC + i] = rf[x], rowH[wc * kC + i] = rh[x];
      }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        float s = cf[nt][x];
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        s += __shfl_xor_sync(0xffffffffu, s, 8);
        s += __shfl_xor_sync(0xffffffffu, s, 16);
        if (lane < 4) colF[wr * kC + acc_col(n0, nt, x)] = s;
      }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kC * kC / 2; e += blockDim.x) {
    const int i = 2 * e / kC, j = 2 * e % kC;
    store_split2(sM, cp, i * ldc + j, sE[i * (kC + 1) + j] + sE[j * (kC + 1) + i],
                 sE[i * (kC + 1) + j + 1] + sE[(j + 1) * (kC + 1) + i]);
  }
  if (threadIdx.x < kC) {
    const int i = threadIdx.x;
    float* pos = w.pos + tile * 2 * kC;
    pos[i] = rowV[i] + rowH[i] + rowH[kC + i];
    pos[kC + i] = rowF[i] + rowF[kC + i] - colF[i] - colF[kC + i] - colF[2 * kC + i] - colF[3 * kC + i];
  }
  __syncthreads();
  constexpr int NK = DK / 16;
  const int n0 = wc * DK / 2;
  {
    float acc[1][NK][4] = {};
    gemm(acc, op2<false>(sPD, cp, ldc), op<true>(sK, ldk), i0, n0, 0, kC);
    float* dQ = w.dQ + tile * kC * DK;
#pragma unroll
    for (int nt = 0; nt < NK; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        *reinterpret_cast<float2*>(dQ + acc_row(i0, 0, e) * DK + acc_col(n0, nt, e)) =
            make_float2(acc[0][nt][e], acc[0][nt][e + 1]);
  }
  float acc[1][NK][4] = {};
  gemm(acc, op2<true>(sPD, cp, ldc), op<true>(sQ, ldk), i0, n0, 0, kC);
  gemm(acc, op2<false>(sM, cp, ldc), op<true>(sK, ldk), i0, n0, 0, kC);
  float* dK = w.dK + tile * kC * DK;
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      *reinterpret_cast<float2*>(dK + acc_row(i0, 0, e) * DK + acc_col(n0, nt, e)) =
          make_float2(acc[0][nt][e], acc[0][nt][e + 1]);
}

template <int DK, int DV>
struct StateGradSmem {
  static constexpr int Q = 0, K = Q + tile_bytes(kC, DK), O = K + tile_bytes(kC, DK),
                       U = O + tile_bytes(kC, DV), R = U + 2 * tile_bytes(DV, kC),
                       S = R + 2 * tile_bytes(kC, DV), sums = S + 2 * tile_bytes(DV, DK),
                       bytes = sums + (7 * kC + 32) * 4;
};

// Sum over a row of this warp's accumulator block of x . m (m a bf16 tile, row stride ld) for its two rows.
template <int NK>
__device__ __forceinline__ void row_dots(const float (&x)[1][NK][4], const bf16* m, int ld, int i0, int n0,
                                         float (&out)[2]) {
  out[0] = out[1] = 0.0f;
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const float2 f = __bfloat1622float2(
          *reinterpret_cast<const __nv_bfloat162*>(m + acc_row(i0, 0, e) * ld + acc_col(n0, nt, e)));
      out[e >> 1] += x[0][nt][e] * f.x + x[0][nt][e + 1] * f.y;
    }
  out[0] = quad_sum(out[0]), out[1] = quad_sum(out[1]);
}

// The gradients through S and dS' (the state's gradient at the chunk's end; S' = el S + K^T diag(lam) u):
//   Z = u dS'^T: dlam_i = <K_i, Z_i>, dk += diag(lam) Z;  el: dG_l += el <dS', S>;
//   Y = dR S^T: dk -= diag(beta eg) Y, dbeta_i -= eg_i <K_i, Y_i>, deg_i = -beta_i <K_i, Y_i>;
//   X = dO S^T: dq += diag(eg) X, deg_i += <Q_i, X_i>;
// then dq, dk with their chunk-local parts, dbeta, and dg_t = sum_{i >= t} dG_i with dG_i = (through D) +
// eg_i deg_i - lam_i dlam_i, and dG_l += sum_m lam_m dlam_m + el <dS', S>.
// Shared: Q, K, dO; u^T, dR (split); dS'^T then S^T (split); partial sums.
template <int DK, int DV>
__global__ void __launch_bounds__(256)
    gdr_grad_state_kernel(const bf16* q, const bf16* k, const bf16* d_o, const float* g, const float* beta,
                          const int32_t* doc_start, bf16* dq, bf16* dk_out, float* dg, float* dbeta, Dims d,
                          Work w) {
  using L = StateGradSmem<DK, DV>;
  constexpr int kThreads = 256, ldk = DK + 8, ldv = DV + 8, ldc = kC + 8, up = DV * ldc, rp = kC * ldv,
                sp = DV * ldk, NK = DK / 16;
  extern __shared__ __align__(16) char smem[];
  __shared__ Gates gt;
  bf16 *sQ = reinterpret_cast<bf16*>(smem + L::Q), *sK = reinterpret_cast<bf16*>(smem + L::K);
  bf16 *sO = reinterpret_cast<bf16*>(smem + L::O), *sU = reinterpret_cast<bf16*>(smem + L::U);
  bf16 *sR = reinterpret_cast<bf16*>(smem + L::R), *sS = reinterpret_cast<bf16*>(smem + L::S);
  float *rowZ = reinterpret_cast<float*>(smem + L::sums), *rowY = rowZ + 2 * kC, *rowX = rowY + 2 * kC,
        *dG = rowX + 2 * kC, *scratch = dG + kC;
  const int64_t c = blockIdx.x, h = blockIdx.y, tile = c * d.nV + h, row0 = c * kC * d.nV + h;
  const int n = int(d.T - c * kC < kC ? d.T - c * kC : int64_t(kC));
  const bf16* Sg = w.S + tile * 2 * DV * DK;
  cp_rows<DK * 2, kC, kThreads>(sK, ldk * 2, k + row0 * DK, d.nV * DK * 2, n);
  cp_rows<kC * 2, 2 * DV, kThreads>(sU, ldc * 2, w.u + tile * 2 * DV * kC, kC * 2, 2 * DV);
  cp_rows<DK * 2, 2 * DV, kThreads>(sS, ldk * 2, w.dS + tile * 2 * DV * DK, DK * 2, 2 * DV);
  cp_commit();  // K, u and dS' first, for Z
  cp_rows<DK * 2, kC, kThreads>(sQ, ldk * 2, q + row0 * DK, d.nV * DK * 2, n);
  cp_rows<DV * 2, kC, kThreads>(sO, ldv * 2, d_o + row0 * DV, d.nV * DV * 2, n);
  cp_rows<DV * 2, 2 * kC, kThreads>(sR, ldv * 2, w.dR + tile * 2 * kC * DV, DV * 2, 2 * kC);
  cp_commit();
  gates_load(gt, g, beta, doc_start, d, c, h);
  cp_wait<1>();
  __syncthreads();
  const int warp = threadIdx.x >> 5, wr = warp & 3, wc = warp >> 2, i0 = 16 * wr, n0 = wc * DK / 2;
  const bool quad0 = (threadIdx.x & 3) == 0;
  float dk[1][NK][4], x[1][NK][4] = {}, dots[2];
  gemm(x, op2<true>(sU, up, ldc), op2<true>(sS, sp, ldk), i0, n0, 0, DV);  // Z
  row_dots(x, sK, ldk, i0, n0, dots);
  if (quad0) rowZ[wc * kC + acc_row(i0, 0, 0)] = dots[0], rowZ[wc * kC + acc_row(i0, 0, 2)] = dots[1];
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[0][nt][e] = gt.lam[acc_row(i0, 0, e)] * x[0][nt][e];
  float ss = 0.0f;  // <dS', S>: S from global memory (all loads in flight at once), dS' from shared
#pragma unroll
  for (int e0 = 0; e0 < DV * DK / 8; e0 += kThreads) {
    const int e = e0 + int(threadIdx.x), j = 8 * e / DK, a = 8 * e % DK;
    const uint4 sh = *reinterpret_cast<const uint4*>(Sg + 8 * e),
                sl = *reinterpret_cast<const uint4*>(Sg + DV * DK + 8 * e),
                dh = *reinterpret_cast<const uint4*>(sS + j * ldk + a),
                dl = *reinterpret_cast<const uint4*>(sS + sp + j * ldk + a);
    const uint32_t shw[4] = {sh.x, sh.y, sh.z, sh.w}, slw[4] = {sl.x, sl.y, sl.z, sl.w},
                   dhw[4] = {dh.x, dh.y, dh.z, dh.w}, dlw[4] = {dl.x, dl.y, dl.z, dl.w};
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const float2 s1 = unpack(shw[x]), s2 = unpack(slw[x]), d1 = unpack(dhw[x]), d2 = unpack(dlw[x]);
      ss += (d1.x + d2.x) * (s1.x + s2.x) + (d1.y + d2.y) * (s1.y + s2.y);
    }
  }
  ss = block_sum(ss, scratch);  // its barriers also end every read of dS'
  cp_rows<DK * 2, 2 * DV, kThreads>(sS, ldk * 2, Sg, DK * 2, 2 * DV);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
#pragma unroll
  for (int nt = 0; nt < NK; ++nt) x[0][nt][0] = x[0][nt][1] = x[0][nt][2] = x[0][nt][3] = 0.0f;
  gemm(x, op2<false>(sR, rp, ldv), op2<true>(sS, sp, ldk), i0, n0, 0, DV);  // Y
  row_dots(x, sK, ldk, i0, n0, dots);
  if (quad0) rowY[wc * kC + acc_row(i0, 0, 0)] = dots[0], rowY[wc * kC + acc_row(i0, 0, 2)] = dots[1];
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = acc_row(i0, 0, e);
      dk[0][nt][e] -= gt.beta[i] * gt.eg[i] * x[0][nt][e];
      x[0][nt][e] = 0.0f;
    }
  gemm(x, op<false>(sO, ldv), op2<true>(sS, sp, ldk), i0, n0, 0, DV);  // X
  row_dots(x, sQ, ldk, i0, n0, dots);
  if (quad0) rowX[wc * kC + acc_row(i0, 0, 0)] = dots[0], rowX[wc * kC + acc_row(i0, 0, 2)] = dots[1];
  const float *dQl = w.dQ + tile * kC * DK, *dKl = w.dK + tile * kC * DK;
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int i = acc_row(i0, 0, e), a = acc_col(n0, nt, e);
      if (i >= n) continue;
      const float2 lq = *reinterpret_cast<const float2*>(dQl + i * DK + a),
                   lk = *reinterpret_cast<const float2*>(dKl + i * DK + a);
      const int64_t at = (row0 + i * d.nV) * DK + a;
      store_bf16x2(dq, at, lq.x + gt.eg[i] * x[0][nt][e], lq.y + gt.eg[i] * x[0][nt][e + 1]);
      store_bf16x2(dk_out, at, lk.x + dk[0][nt][e], lk.y + dk[0][nt][e + 1]);
    }
  __syncthreads();
  if (threadIdx.x < kC) {
    const int i = threadIdx.x;
    const float* pos = w.pos + tile * 2 * kC;
    const float ky = rowY[i] + rowY[kC + i], kz = rowZ[i] + rowZ[kC + i], qx = rowX[i] + rowX[kC + i];
    if (i < n) dbeta[(c * kC + i) * d.nV + h] = pos[i] - gt.eg[i] * ky;
    dG[i] = pos[kC + i] + gt.eg[i] * (qx - gt.beta[i] * ky) - gt.lam[i] * kz;
    rowZ[i] = gt.lam[i] * kz;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int l = n - 1;
    float acc = gt.eg[l] * ss;
    for (int m = 0; m < n; ++m) acc += rowZ[m];
    for (int i = l; i >= 0; --i) {
      acc += dG[i];
      dg[(c * kC + i) * d.nV + h] = acc;
    }
  }
}

// ---- host side ----

template <class F>
void allow_smem(F kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

Dims dims(int64_t T, int64_t nV, int64_t dk, int64_t dv) {
  return Dims{T, nV, dk, dv, (T + kC - 1) / kC};
}

// Calls f.template operator()<DK, DV>() for the supported head dims.
template <class F>
void with_dims(int64_t dk, int64_t dv, F&& f) {
  TUNE_CHECK(gated_delta_rule_supported(dk, dv))
      << "gated_delta_rule: CUDA kernels take head dims 64 or 128, not dk " << dk << " dv " << dv;
  if (dk == 64 && dv == 64) {
    f.template operator()<64, 64>();
  } else if (dk == 64) {
    f.template operator()<64, 128>();
  } else if (dv == 64) {
    f.template operator()<128, 64>();
  } else {
    f.template operator()<128, 128>();
  }
}

// The forward's prep and state passes (the backward's first steps).
template <int DK, int DV, bool kBwd>
void run_prep_state(const bf16* q, const bf16* k, const bf16* v, const bf16* d_o, const float* g,
                    const float* beta, const int32_t* doc_start, const Dims& d, const Work& w,
                    cudaStream_t st) {
  const dim3 chunks(unsigned(d.chunks), unsigned(d.nV)), cols(unsigned(DV / 16), unsigned(d.nV));
  constexpr int prep = PrepSmem<DK, DV, kBwd>::bytes, state = StateFwdSmem<DK>::bytes;
  allow_smem(gdr_prep_kernel<DK, DV, kBwd>, prep);
  gdr_prep_kernel<DK, DV, kBwd><<<chunks, 256, prep, st>>>(q, k, v, d_o, g, beta, doc_start, d, w);
  TUNE_CUDA_LAUNCHED();
  allow_smem(gdr_state_fwd_kernel<DK, DV>, state);
  gdr_state_fwd_kernel<DK, DV><<<cols, 2 * DK, state, st>>>(k, d, w);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace

bool gated_delta_rule_supported(int64_t dk, int64_t dv) {
  return (dk == 64 || dk == 128) && (dv == 64 || dv == 128);
}

size_t gated_delta_rule_workspace_bytes(int64_t T, int64_t nV, int64_t dk, int64_t dv, bool backward) {
  size_t bytes = 0;
  work_split(nullptr, dims(T, nV, dk, dv), backward, &bytes);
  return bytes;
}

void gated_delta_rule_fwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, void* o, void* workspace, int64_t T, int64_t nV,
                          int64_t dk, int64_t dv, void* stream) {
  with_dims(dk, dv, [&]<int DK, int DV>() {
    if (T * nV == 0) return;
    const auto st = static_cast<cudaStream_t>(stream);
    const Dims d = dims(T, nV, dk, dv);
    size_t bytes = 0;
    const Work w = work_split(workspace, d, false, &bytes);
    const auto *qb = static_cast<const bf16*>(q), *kb = static_cast<const bf16*>(k);
    run_prep_state<DK, DV, false>(qb, kb, static_cast<const bf16*>(v), nullptr, g, beta, doc_start, d, w, st);
    constexpr int out = OutSmem<DK>::bytes;
    allow_smem(gdr_out_kernel<DK, DV>, out);
    gdr_out_kernel<DK, DV><<<dim3(unsigned(d.chunks), unsigned(nV), DV / 64), 256, out, st>>>(
        qb, kb, g, beta, doc_start, static_cast<bf16*>(o), d, w);
    TUNE_CUDA_LAUNCHED();
  });
}

void gated_delta_rule_bwd(const void* q, const void* k, const void* v, const float* g, const float* beta,
                          const int32_t* doc_start, const void* d_o, void* dq, void* dk, void* dv, float* dg,
                          float* dbeta, void* workspace, int64_t T, int64_t nV, int64_t dk_, int64_t dv_,
                          void* stream) {
  with_dims(dk_, dv_, [&]<int DK, int DV>() {
    if (T * nV == 0) return;
    const auto st = static_cast<cudaStream_t>(stream);
    const Dims d = dims(T, nV, dk_, dv_);
    size_t bytes = 0;
    const Work w = work_split(workspace, d, true, &bytes);
    const auto *qb = static_cast<const bf16*>(q), *kb = static_cast<const bf16*>(k),
               *vb = static_cast<const bf16*>(v), *dob = static_cast<const bf16*>(d_o);
    run_prep_state<DK, DV, true>(qb, kb, vb, dob, g, beta, doc_start, d, w, st);
    const dim3 chunks(unsigned(d.chunks), unsigned(nV)), cols(unsigned(DV / 16), unsigned(nV));
    constexpr int rev = StateBwdSmem<DK>::bytes, intra = IntraSmem<DK, DV>::bytes,
                  state = StateGradSmem<DK, DV>::bytes;
    allow_smem(gdr_state_bwd_kernel<DK, DV>, rev);
    gdr_state_bwd_kernel<DK, DV><<<cols, 2 * DK, rev, st>>>(qb, kb, dob, d, w);
    TUNE_CUDA_LAUNCHED();
    allow_smem(gdr_grad_intra_kernel<DK, DV>, intra);
    gdr_grad_intra_kernel<DK, DV>
        <<<chunks, 256, intra, st>>>(qb, kb, vb, dob, g, beta, doc_start, static_cast<bf16*>(dv), d, w);
    TUNE_CUDA_LAUNCHED();
    allow_smem(gdr_grad_state_kernel<DK, DV>, state);
    gdr_grad_state_kernel<DK, DV><<<chunks, 256, state, st>>>(
        qb, kb, dob, g, beta, doc_start, static_cast<bf16*>(dq), static_cast<bf16*>(dk), dg, dbeta, d, w);
    TUNE_CUDA_LAUNCHED();
  });
}

}  // namespace tune::cuda
