// Fused causal attention on CUDA, FlashAttention-2 style: bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulators) fed by ldmatrix from shared memory, tiles brought in with cp.async, online softmax in the log2
// domain (scores scaled by scale * log2(e), ex2.approx).
// Forward: one CTA per (query head, tile of 16 * kMT * kWarps query rows); each warp owns 16 * kMT rows and walks
// the key tiles its rows can see, from the diagonal back to the first document start, with K(j - 1) loading
// during the softmax and P V of tile j and V(j) loading during Q K(j)^T. Key tiles before the first document
// start of the query tile are never visited, so packed short documents cost little.
// Backward: D = rowsum(dO * O) first (and the fp32 dq accumulators cleared); then one CTA per (kv head, tile of
// 16 * kWarps keys, slice of kDH head dims): each warp owns 16 keys and keeps their dK and dV in registers while
// the CTA walks the query tiles that see a key of the tile (up to the end of its document), for each query head
// of the group (so dK/dV need no atomics), with the next Q/dO tile double-buffered. Per step: S^T = K Q^T, P^T,
// dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += dS^T Q, and dQ += dS K through shared memory and
// fp32 atomics into the workspace; a last pass scales dq and stores it as bf16.
// Shared-memory rows are padded by 16 bytes so that ldmatrix's eight row addresses fall in distinct banks.
// Tile shapes per head dim are FwdConfig/BwdConfig below; the TUNE_FA_* macros let a benchmark build override
// some of them (bench/NOTES_attention.md).
// On Hopper (compute capability 9.0), head dim 128 takes the wgmma kernels of flash_attention_wgmma.cu instead
// (forward, and the backward's main pass). TUNE_FA_WGMMA is a compile-time mask for benchmarks and bisection:
// bit 0 the forward, bit 1 the backward (default 3, both; 0 gives the mma.sync kernels everywhere).
#include <climits>

#include "ops/cuda/flash_attention_ptx.cuh"
#include "ops/cuda/flash_attention_wgmma.cuh"
#include "ops/cuda/kernel_util.cuh"
#include "ops/flash_attention.h"

#ifndef TUNE_FA_WGMMA
#define TUNE_FA_WGMMA 3
#endif

#ifndef TUNE_FA_FWD64_BC
#define TUNE_FA_FWD64_BC 64
#endif
#ifndef TUNE_FA_FWD64_MT
#define TUNE_FA_FWD64_MT 1
#endif
#ifndef TUNE_FA_FWD128_BC
#define TUNE_FA_FWD128_BC 48
#endif
#ifndef TUNE_FA_FWD128_WARPS
#define TUNE_FA_FWD128_WARPS 4
#endif
#ifndef TUNE_FA_FWD128_MT
#define TUNE_FA_FWD128_MT 2
#endif
#ifndef TUNE_FA_BWD128_BR
#define TUNE_FA_BWD128_BR 64
#endif
#ifndef TUNE_FA_BWD128_WARPS
#define TUNE_FA_BWD128_WARPS 8
#endif

namespace tune::cuda {

namespace {

using namespace flash;  // PTX wrappers and constants shared with the wgmma kernels

// Forward: kBC keys per tile, kWarps warps of kMT fragments of 16 query rows (each K/V fragment read from shared
// memory serves kMT of them); Q fragments stay in registers when they fit. d = 128 takes kMT = 2 (about 11% faster
// than 1 on Qwen3 shapes) with kBC = 48, the largest key tile that does not spill; d = 64 was slower with kMT = 2.
template <int D>
struct FwdConfig;
template <>
struct FwdConfig<64> {
  static constexpr int kBC = TUNE_FA_FWD64_BC, kWarps = 4, kMT = TUNE_FA_FWD64_MT;
  static constexpr bool kQInRegs = kMT == 1;
};
template <>
struct FwdConfig<128> {
  static constexpr int kBC = TUNE_FA_FWD128_BC, kWarps = TUNE_FA_FWD128_WARPS, kMT = TUNE_FA_FWD128_MT;
  static constexpr bool kQInRegs = kMT == 1;
};
template <>
struct FwdConfig<256> {  // 128 fp32 accumulators of O per thread already: Q is re-read from shared memory
  static constexpr int kBC = 32, kWarps = 4, kMT = 1;
  static constexpr bool kQInRegs = false;
};

// Backward: kWarps warps of 16 keys, kBR queries per step, kDH head dims of dK/dV/dQ per CTA (d = 256 takes
// two slices: dK and dV of 256 dims would not fit in registers; S and dP are recomputed per slice).
template <int D>
struct BwdConfig;
template <>
struct BwdConfig<64> {
  static constexpr int kDH = 64, kBR = 64, kWarps = 8;
};
template <>
struct BwdConfig<128> {
  static constexpr int kDH = 128, kBR = TUNE_FA_BWD128_BR, kWarps = TUNE_FA_BWD128_WARPS;
};
template <>
struct BwdConfig<256> {
  static constexpr int kDH = 128, kBR = 32, kWarps = 4;
};

// ---- PTX wrappers -------------------------------------------------------------------------------------------

__device__ __forceinline__ void st_u32(bf16* p, uint32_t v) { *reinterpret_cast<uint32_t*>(p) = v; }

// Rows [row0, row0 + ROWS) of a bf16 matrix with `stride` elements per row, columns [0, D), into shared memory
// rows of D + 8 elements; rows at or past T are zero-filled. All THREADS threads of the CTA take part.
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_rows(bf16* s, const bf16* g, int64_t stride, int row0, int T) {
  constexpr int kChunks = D / 8, LD = D + 8;
  static_assert(ROWS * kChunks % THREADS == 0, "tile rows must split evenly over the CTA");
#pragma unroll
  for (int it = 0; it < ROWS * kChunks / THREADS; ++it) {
    const int i = it * THREADS + int(threadIdx.x), r = i / kChunks, c = i % kChunks, t = row0 + r;
    const bool ok = t < T;
    cp_async16(smem_u32(s + r * LD + c * 8), g + (ok ? int64_t(t) * stride : 0) + c * 8, ok);
  }
}

// ---- forward ------------------------------------------------------------------------------------------------

struct FwdArgs {
  const bf16 *q, *k, *v;
  const int32_t* doc_start;
  bf16* o;
  float* lse;
  int64_t q_stride, k_stride, v_stride, o_stride;
  int T, group;
  float scale_log2;
};

template <int D, int BC, int NW, int MT, bool kQInRegs>
__global__ void __launch_bounds__(NW * 32) flash_fwd_kernel(const FwdArgs a) {
  constexpr int BR = 16 * MT * NW, LD = D + 8, KD = D / 16, THREADS = NW * 32;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // (BR, LD)
  bf16* sK = sQ + BR * LD;                    // (BC, LD)
  bf16* sV = sK + BC * LD;                    // (BC, LD)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  // Heads vary fastest in launch order.
  const int T = a.T, h = blockIdx.x, kh = h / a.group;
  const auto [q0, kb_first, kb_last, ds_last] = fwd_tile<BR, BC>(a.doc_start, T);
  const bf16* gk = a.k + int64_t(kh) * D;
  const bf16* gv = a.v + int64_t(kh) * D;

  load_rows<BR, D, THREADS>(sQ, a.q + int64_t(h) * D, a.q_stride, q0, T);
  load_rows<BC, D, THREADS>(sK, gk, a.k_stride, kb_last * BC, T);
  cp_async_commit();

  // The warp owns rows [q0 + w0, q0 + w0 + 16 MT): MT fragments of 16 rows. Per fragment mt this thread holds
  // rows r[mt][0] = ... + g and r[mt][1] = r[mt][0] + 8, and the first key each sees (INT_MAX: a row past T).
  const int w0 = warp * 16 * MT;
  int r[MT][2], ds[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      r[mt][i] = q0 + w0 + mt * 16 + g + 8 * i;
      ds[mt][i] = r[mt][i] < T ? (a.doc_start ? a.doc_start[r[mt][i]] : 0) : INT_MAX;
    }
  }
  // ldmatrix lane addresses: A = this warp's Q rows; B = K^T (rows of K as given); B = V (rows, transposed).
  const uint32_t aq = smem_u32(sQ + (w0 + (lane & 15)) * LD + (lane >> 4) * 8);
  const uint32_t bk = smem_u32(sK + ((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8);
  const uint32_t bv = smem_u32(sV + (lane & 15) * LD + (lane >> 4) * 8);
  const float sl2 = a.scale_log2;

  uint32_t qf[kQInRegs ? MT : 1][kQInRegs ? KD : 1][4];
  float oacc[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int j = 0; j < D / 8; ++j) oacc[mt][j][0] = oacc[mt][j][1] = oacc[mt][j][2] = oacc[mt][j][3] = 0.0f;
  // Running max (log2 units) and this thread's partial sums of each row.
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

  for (int kb = kb_last; kb >= kb_first; --kb) {
    const int k0 = kb * BC;
    cp_async_wait_all();
    __syncthreads();  // K(kb) has landed; every warp is done with V(kb + 1)
    load_rows<BC, D, THREADS>(sV, gv, a.v_stride, k0, T);
    cp_async_commit();
    if constexpr (kQInRegs) {
      if (kb == kb_last) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int kk = 0; kk < KD; ++kk) ldsm_x4(aq + (mt * 16 * LD + kk * 16) * 2, qf[mt][kk]);
      }
    }

    // S = Q K^T: 16 MT rows x BC keys per warp; each K fragment serves the MT row fragments.
    float sacc[MT][BC / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < BC / 8; ++j) sacc[mt][j][0] = sacc[mt][j][1] = sacc[mt][j][2] = sacc[mt][j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQInRegs) {
#pragma unroll
          for (int x = 0; x < 4; ++x) af[mt][x] = qf[mt][kk][x];
        } else {
          ldsm_x4(aq + (mt * 16 * LD + kk * 16) * 2, af[mt]);
        }
      }
#pragma unroll
      for (int nn = 0; nn < BC / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4(bk + (nn * 16 * LD + kk * 16) * 2, b);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(sacc[mt][2 * nn], af[mt], b[0], b[1]);
          mma_bf16(sacc[mt][2 * nn + 1], af[mt], b[2], b[3]);
        }
      }
    }
    // Masks: unless every key of the tile precedes every row and lies in every row's document.
    if (!(k0 + BC - 1 <= q0 && ds_last <= k0)) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < BC / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int s = k0 + 8 * j + 2 * tq + (e & 1), i = e >> 1;
            if (s < ds[mt][i] || s > r[mt][i]) sacc[mt][j][e] = -INFINITY;
          }
    }

    // Online softmax per row: new running max, rescale of the old sum and output, P = 2^(S sl2 - max), packed
    // to bf16 as the A operand of P V (the accumulator layout of S is the A layout of P).
    uint32_t pf[MT][BC / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float base[2], alpha[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[mt][j][2 * i], sacc[mt][j][2 * i + 1]));
        const float mn = fmaxf(m[mt][i], quad_max(mx) * sl2);
        // A row with no visible key yet keeps max -inf: subtract 0 instead, so that 2^(-inf) = 0, not NaN.
        base[i] = mn == -INFINITY ? 0.0f : mn;
        alpha[i] = exp2_approx(m[mt][i] - base[i]);
        m[mt][i] = mn;
        l[mt][i] *= alpha[i];
      }
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        oacc[mt][j][0] *= alpha[0], oacc[mt][j][1] *= alpha[0];
        oacc[mt][j][2] *= alpha[1], oacc[mt][j][3] *= alpha[1];
      }
#pragma unroll
      for (int j = 0; j < BC / 8; ++j) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) p[e] = exp2_approx(fmaf(sacc[mt][j][e], sl2, -base[e >> 1]));
        l[mt][0] += p[0] + p[1], l[mt][1] += p[2] + p[3];
        pf[mt][j >> 1][(j & 1) * 2] = pack_bf16(p[0], p[1]);
        pf[mt][j >> 1][(j & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
      }
    }

    cp_async_wait_all();
    __syncthreads();  // V(kb) has landed; every warp is done with K(kb)
    if (kb > kb_first) {
      load_rows<BC, D, THREADS>(sK, gk, a.k_stride, k0 - BC, T);
      cp_async_commit();
    }
    // O += P V
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4_t(bv + (kk * 16 * LD + nn * 16) * 2, b);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(oacc[mt][2 * nn], pf[mt][kk], b[0], b[1]);
          mma_bf16(oacc[mt][2 * nn + 1], pf[mt][kk], b[2], b[3]);
        }
      }
    }
  }

  // O / l through this warp's own rows of sQ (no other warp reads them) for 16-byte stores; lse per row.
  bf16* so = sQ + w0 * LD;
  __syncwarp();
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float li = quad_sum(l[mt][i]);
      inv[i] = li > 0.0f ? 1.0f / li : 0.0f;
      if (tq == 0 && r[mt][i] < T) a.lse[int64_t(h) * T + r[mt][i]] = (m[mt][i] + log2f(li)) * kLn2;
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      st_u32(so + (mt * 16 + g) * LD + 8 * j + 2 * tq, pack_bf16(oacc[mt][j][0] * inv[0], oacc[mt][j][1] * inv[0]));
      st_u32(so + (mt * 16 + g + 8) * LD + 8 * j + 2 * tq,
             pack_bf16(oacc[mt][j][2] * inv[1], oacc[mt][j][3] * inv[1]));
    }
  }
  __syncwarp();
  bf16* go = a.o + int64_t(h) * D;
#pragma unroll
  for (int i = lane; i < 16 * MT * (D / 8); i += 32) {
    const int rr = i / (D / 8), c = i % (D / 8), t = q0 + w0 + rr;
    if (t < T)
      *reinterpret_cast<uint4*>(go + int64_t(t) * a.o_stride + c * 8) =
          *reinterpret_cast<const uint4*>(so + rr * LD + c * 8);
  }
}

// ---- backward -----------------------------------------------------------------------------------------------

// Per (t, h): dvec[h, t] = dO . O (fp32), and dq_acc[t, h, :] = 0. D / 8 threads per row, 8 elements each.
template <int D>
__global__ void flash_bwd_pre_kernel(const bf16* o, const bf16* d_o, int64_t o_stride, float* dvec, float* dq_acc,
                                     int T, int nH) {
  constexpr int L = D / 8;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, row = idx / L, rows = int64_t(T) * nH;
  const int c = int(idx % L);
  float s = 0.0f;
  if (row < rows) {
    const int64_t t = row / nH, h = row % nH, off = t * o_stride + h * D + c * 8;
    const uint4 ov = *reinterpret_cast<const uint4*>(o + off), gv = *reinterpret_cast<const uint4*>(d_o + off);
    const uint32_t ow[4] = {ov.x, ov.y, ov.z, ov.w}, gw[4] = {gv.x, gv.y, gv.z, gv.w};
#pragma unroll
    for (int j = 0; j < 4; ++j)  // a bf16 is the top half of an f32
      s += __uint_as_float(ow[j] << 16) * __uint_as_float(gw[j] << 16) +
           __uint_as_float(ow[j] & 0xffff0000u) * __uint_as_float(gw[j] & 0xffff0000u);
    float4* z = reinterpret_cast<float4*>(dq_acc + row * D + c * 8);
    z[0] = z[1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
#pragma unroll
  for (int off = L / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (row < rows && c == 0) dvec[(row % nH) * T + row / nH] = s;
}

// dq[t, h, :] = bf16(scale * dq_acc[t, h, :]).
template <int D>
__global__ void flash_bwd_dq_kernel(const float* dq_acc, bf16* dq, int64_t q_stride, float scale, int T, int nH) {
  constexpr int L = D / 8;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, row = idx / L;
  if (row >= int64_t(T) * nH) return;
  const int c = int(idx % L);
  const float4* src = reinterpret_cast<const float4*>(dq_acc + row * D + c * 8);
  const float4 x = src[0], y = src[1];
  uint4 out;
  out.x = pack_bf16(x.x * scale, x.y * scale);
  out.y = pack_bf16(x.z * scale, x.w * scale);
  out.z = pack_bf16(y.x * scale, y.y * scale);
  out.w = pack_bf16(y.z * scale, y.w * scale);
  *reinterpret_cast<uint4*>(dq + (row / nH) * q_stride + (row % nH) * D + c * 8) = out;
}

struct BwdArgs {
  const bf16 *q, *k, *v, *d_o;
  const float* lse;
  float* dvec;  // written by the first launch, read by the main kernel
  const int32_t* doc_start;
  float* dq_acc;
  bf16 *dk, *dv;
  int64_t q_stride, k_stride, v_stride, o_stride;
  int T, nH, group;
  float scale, scale_log2;
};

template <int D, int BR, int NW>
constexpr size_t bwd_smem_bytes() {
  constexpr int BC = 16 * NW, LD = D + 8;
  return size_t(2 * BC * LD + 4 * BR * LD + BC * (BR + 8)) * 2 + size_t(6 * BR) * 4;
}

template <int D, int DH, int BR, int NW>
__global__ void __launch_bounds__(NW * 32, 1) flash_bwd_kernel(const BwdArgs a) {
  constexpr int BC = 16 * NW, LD = D + 8, LDS = BR + 8, KD = D / 16, THREADS = NW * 32;
  constexpr int RG = BR / 16, WD = DH * RG / NW;  // dQ: RG groups of 16 query rows x NW / RG slices of WD dims
  static_assert(NW % RG == 0 && WD % 16 == 0 && BR <= THREADS, "backward tile shape");
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);         // (BC, LD)
  bf16* sV = sK + BC * LD;                           // (BC, LD)
  bf16* sQ = sV + BC * LD;                           // (2, BR, LD): the current step and the next
  bf16* sdO = sQ + 2 * BR * LD;                      // (2, BR, LD)
  bf16* sdS = sdO + 2 * BR * LD;                     // (BC, LDS): dS^T of the step
  float* s_lse = reinterpret_cast<float*>(sdS + BC * LDS);  // (2, BR)
  float* s_dvec = s_lse + 2 * BR;                            // (2, BR)
  int* s_ds = reinterpret_cast<int*>(s_dvec + 2 * BR);       // (2, BR): doc_start of the step's queries
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  // kv heads vary fastest in launch order: the first key tiles, with the most queries, start first.
  const int T = a.T, k0 = blockIdx.y * BC, kh = blockIdx.x, c0 = blockIdx.z * DH;
  const int k_last = min(k0 + BC, T) - 1;

  load_rows<BC, D, THREADS>(sK, a.k + int64_t(kh) * D, a.k_stride, k0, T);
  load_rows<BC, D, THREADS>(sV, a.v + int64_t(kh) * D, a.v_stride, k0, T);
  // Queries that see a key of the tile: [k0, q_end).
  const int q_end = queries_end(a.doc_start, k_last, T);
  const int qt_first = k0 / BR, nq = (q_end - 1) / BR - qt_first + 1, n_steps = a.group * nq;

  // Step i: query head kh * group + i / nq, query tile qt_first + i % nq, into buffer `buf`.
  auto stage = [&](int i, int buf) {
    const int h = kh * a.group + i / nq, q0 = (qt_first + i % nq) * BR;
    load_rows<BR, D, THREADS>(sQ + buf * BR * LD, a.q + int64_t(h) * D, a.q_stride, q0, T);
    load_rows<BR, D, THREADS>(sdO + buf * BR * LD, a.d_o + int64_t(h) * D, a.o_stride, q0, T);
    if (int(threadIdx.x) < BR) {
      const int r = threadIdx.x, at = buf * BR + r;
      stage_query_row(s_lse + at, s_dvec + at, s_ds + at, a.lse, a.dvec, a.doc_start, h, q0 + r, T);
    }
    cp_async_commit();
  };
  stage(0, 0);  // one group with K and V

  float dka[DH / 8][4], dva[DH / 8][4];
#pragma unroll
  for (int j = 0; j < DH / 8; ++j) {
    dka[j][0] = dka[j][1] = dka[j][2] = dka[j][3] = 0.0f;
    dva[j][0] = dva[j][1] = dva[j][2] = dva[j][3] = 0.0f;
  }
  const int key0 = k0 + warp * 16 + g, key1 = key0 + 8;  // this thread's fragment rows of S^T
  const int wq = warp % RG, wd = warp / RG;
  // ldmatrix lane addresses. A from this warp's rows of K and V; B from rows of Q/dO, as given (nt_off) or
  // transposed (t_off); dQ's A = dS from sdS transposed, its B = K transposed.
  const uint32_t ak = smem_u32(sK + (warp * 16 + (lane & 15)) * LD + (lane >> 4) * 8);
  const uint32_t av = smem_u32(sV + (warp * 16 + (lane & 15)) * LD + (lane >> 4) * 8);
  const int nt_off = ((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8;
  const int t_off = (lane & 15) * LD + (lane >> 4) * 8;
  const uint32_t as = smem_u32(sdS + ((lane & 7) + ((lane >> 4) << 3)) * LDS + wq * 16 + ((lane >> 3) & 1) * 8);
  const uint32_t bkt = smem_u32(sK + t_off + c0 + wd * WD);
  const float sl2 = a.scale_log2;

  for (int i = 0; i < n_steps; ++i) {
    const int buf = i & 1, h = kh * a.group + i / nq, q0 = (qt_first + i % nq) * BR;
    cp_async_wait_all();
    __syncthreads();  // step i has landed; every warp is done with step i - 1 (its buffers and sdS)
    if (i + 1 < n_steps) stage(i + 1, buf ^ 1);
    const uint32_t sq = smem_u32(sQ + buf * BR * LD), sdo = smem_u32(sdO + buf * BR * LD);
    const float* lse = s_lse + buf * BR;
    const float* dvec = s_dvec + buf * BR;
    const int* ds = s_ds + buf * BR;

    // S^T = K Q^T: 16 keys x BR queries per warp.
    float st[BR / 8][4];
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) st[j][0] = st[j][1] = st[j][2] = st[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t af[4];
      ldsm_x4(ak + kk * 32, af);
#pragma unroll
      for (int nn = 0; nn < BR / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4(sq + (nt_off + nn * 16 * LD + kk * 16) * 2, b);
        mma_bf16(st[2 * nn], af, b[0], b[1]);
        mma_bf16(st[2 * nn + 1], af, b[2], b[3]);
      }
    }
    // P^T = exp(S^T scale - lse[query]), 0 where masked (past T, before the query's document, after it).
    const bool need_mask = !(k0 + BC - 1 <= q0 && q0 + BR <= T && ds[BR - 1] <= k0);
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = 8 * j + 2 * tq + e, t = q0 + r;
        const float nl = -lse[r] * kLog2e;
        float p0 = exp2_approx(fmaf(st[j][e], sl2, nl)), p1 = exp2_approx(fmaf(st[j][2 + e], sl2, nl));
        if (need_mask) {
          const bool tv = t < T;
          if (!(tv && ds[r] <= key0 && key0 <= t)) p0 = 0.0f;
          if (!(tv && ds[r] <= key1 && key1 <= t)) p1 = 0.0f;
        }
        st[j][e] = p0, st[j][2 + e] = p1;
      }
    }
    // dV += P^T dO (this CTA's slice of dims)
#pragma unroll
    for (int kk = 0; kk < BR / 16; ++kk) {
      const uint32_t af[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                              pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
#pragma unroll
      for (int nn = 0; nn < DH / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4_t(sdo + (t_off + kk * 16 * LD + c0 + nn * 16) * 2, b);
        mma_bf16(dva[2 * nn], af, b[0], b[1]);
        mma_bf16(dva[2 * nn + 1], af, b[2], b[3]);
      }
    }
    // dP^T = V dO^T
    float dpt[BR / 8][4];
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) dpt[j][0] = dpt[j][1] = dpt[j][2] = dpt[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t af[4];
      ldsm_x4(av + kk * 32, af);
#pragma unroll
      for (int nn = 0; nn < BR / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4(sdo + (nt_off + nn * 16 * LD + kk * 16) * 2, b);
        mma_bf16(dpt[2 * nn], af, b[0], b[1]);
        mma_bf16(dpt[2 * nn + 1], af, b[2], b[3]);
      }
    }
    // dS^T = P^T (dP^T - D[query]), without `scale` (applied to dK and dQ at the end)
#pragma unroll
    for (int j = 0; j < BR / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float dd = dvec[8 * j + 2 * tq + e];
        st[j][e] *= dpt[j][e] - dd;
        st[j][2 + e] *= dpt[j][2 + e] - dd;
      }
    }
    // dK += dS^T Q; dS^T also goes to sdS (rows = keys) for dQ.
    bf16* sds = sdS + (warp * 16 + g) * LDS + 2 * tq;
#pragma unroll
    for (int kk = 0; kk < BR / 16; ++kk) {
      const uint32_t af[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                              pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
      st_u32(sds + 16 * kk, af[0]);
      st_u32(sds + 8 * LDS + 16 * kk, af[1]);
      st_u32(sds + 16 * kk + 8, af[2]);
      st_u32(sds + 8 * LDS + 16 * kk + 8, af[3]);
#pragma unroll
      for (int nn = 0; nn < DH / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4_t(sq + (t_off + kk * 16 * LD + c0 + nn * 16) * 2, b);
        mma_bf16(dka[2 * nn], af, b[0], b[1]);
        mma_bf16(dka[2 * nn + 1], af, b[2], b[3]);
      }
    }
    __syncthreads();  // dS^T of every warp is in sdS

    // dQ[rows wq*16.., dims c0 + wd*WD..] += dS K over the BC keys, into the fp32 accumulators.
    float dqa[WD / 8][4];
#pragma unroll
    for (int j = 0; j < WD / 8; ++j) dqa[j][0] = dqa[j][1] = dqa[j][2] = dqa[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t af[4];
      ldsm_x4_t(as + kk * 16 * LDS * 2, af);
#pragma unroll
      for (int nn = 0; nn < WD / 16; ++nn) {
        uint32_t b[4];
        ldsm_x4_t(bkt + (kk * 16 * LD + nn * 16) * 2, b);
        mma_bf16(dqa[2 * nn], af, b[0], b[1]);
        mma_bf16(dqa[2 * nn + 1], af, b[2], b[3]);
      }
    }
    const int t0 = q0 + wq * 16 + g, t1 = t0 + 8;
    float* dq0 = a.dq_acc + (int64_t(t0) * a.nH + h) * D + c0 + wd * WD + 2 * tq;
    float* dq1 = dq0 + int64_t(8) * a.nH * D;
#pragma unroll
    for (int j = 0; j < WD / 8; ++j) {
      if (t0 < T) atomicAdd(reinterpret_cast<float2*>(dq0 + 8 * j), make_float2(dqa[j][0], dqa[j][1]));
      if (t1 < T) atomicAdd(reinterpret_cast<float2*>(dq1 + 8 * j), make_float2(dqa[j][2], dqa[j][3]));
    }
  }

  // dK (times scale) and dV through this warp's rows of sK / sV for 16-byte stores.
  __syncthreads();  // every warp is done reading sK and sV
  bf16* sk = sK + warp * 16 * LD;
  bf16* sv = sV + warp * 16 * LD;
#pragma unroll
  for (int j = 0; j < DH / 8; ++j) {
    st_u32(sk + g * LD + 8 * j + 2 * tq, pack_bf16(dka[j][0] * a.scale, dka[j][1] * a.scale));
    st_u32(sk + (g + 8) * LD + 8 * j + 2 * tq, pack_bf16(dka[j][2] * a.scale, dka[j][3] * a.scale));
    st_u32(sv + g * LD + 8 * j + 2 * tq, pack_bf16(dva[j][0], dva[j][1]));
    st_u32(sv + (g + 8) * LD + 8 * j + 2 * tq, pack_bf16(dva[j][2], dva[j][3]));
  }
  __syncwarp();
#pragma unroll
  for (int i = lane; i < 16 * (DH / 8); i += 32) {
    const int r = i / (DH / 8), c = i % (DH / 8), t = k0 + warp * 16 + r;
    if (t < T) {
      const int64_t col = int64_t(kh) * D + c0 + c * 8;
      *reinterpret_cast<uint4*>(a.dk + int64_t(t) * a.k_stride + col) =
          *reinterpret_cast<const uint4*>(sk + r * LD + c * 8);
      *reinterpret_cast<uint4*>(a.dv + int64_t(t) * a.v_stride + col) =
          *reinterpret_cast<const uint4*>(sv + r * LD + c * 8);
    }
  }
}

// ---- launchers ----------------------------------------------------------------------------------------------

// Raises a kernel's dynamic shared-memory limit once (above 48 KB it must be asked for).
template <class K>
void allow_smem(K* kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int D>
void fwd_launch(const FwdArgs& a, int64_t nH, cudaStream_t stream) {
  using C = FwdConfig<D>;
  constexpr int BR = 16 * C::kMT * C::kWarps;
  constexpr size_t smem = size_t(BR + 2 * C::kBC) * (D + 8) * sizeof(bf16);
  auto* kernel = flash_fwd_kernel<D, C::kBC, C::kWarps, C::kMT, C::kQInRegs>;
  static const bool once = (allow_smem(kernel, smem), true);
  (void)once;
  const dim3 grid(unsigned(nH), unsigned((a.T + BR - 1) / BR));
  TUNE_CHECK(grid.y <= 65535) << "flash_attention_fwd: " << a.T << " tokens is too many";
  kernel<<<grid, C::kWarps * 32, smem, stream>>>(a);
  TUNE_CUDA_LAUNCHED();
}

// The three backward launches: D and cleared accumulators, the main kernel, dq from the accumulators.
template <int D>
void bwd_launch(const BwdArgs& a, const bf16* o, bf16* dq, int64_t nKV, cudaStream_t stream) {
  using C = BwdConfig<D>;
  constexpr int BC = 16 * C::kWarps;
  constexpr size_t smem = bwd_smem_bytes<D, C::kBR, C::kWarps>();
  auto* kernel = flash_bwd_kernel<D, C::kDH, C::kBR, C::kWarps>;
  const unsigned row_blocks = unsigned((int64_t(a.T) * a.nH * (D / 8) + 255) / 256);
  flash_bwd_pre_kernel<D>
      <<<row_blocks, 256, 0, stream>>>(o, a.d_o, a.o_stride, a.dvec, a.dq_acc, a.T, a.nH);
  TUNE_CUDA_LAUNCHED();
  if ((TUNE_FA_WGMMA & 2) && flash_wgmma_supported(D)) {
    const WgmmaBwdParams p{a.q,        a.k,        a.v,        a.d_o,      a.lse,      a.dvec, a.doc_start,
                           a.dq_acc,   a.dk,       a.dv,       a.q_stride, a.k_stride, a.v_stride,
                           a.o_stride, a.T,        a.nH,       int(nKV),   a.group,    a.scale, a.scale_log2};
    flash_wgmma_bwd(p, stream);
  } else {
    static const bool once = (allow_smem(kernel, smem), true);
    (void)once;
    const dim3 grid(unsigned(nKV), unsigned((a.T + BC - 1) / BC), unsigned(D / C::kDH));
    TUNE_CHECK(grid.y <= 65535) << "flash_attention_bwd: " << a.T << " tokens is too many";
    kernel<<<grid, C::kWarps * 32, smem, stream>>>(a);
    TUNE_CUDA_LAUNCHED();
  }
  if (!dq) return;
  flash_bwd_dq_kernel<D><<<row_blocks, 256, 0, stream>>>(a.dq_acc, dq, a.q_stride, a.scale, a.T, a.nH);
  TUNE_CUDA_LAUNCHED();
}

void check_shape(const FlashAttnShape& s, const char* op) {
  TUNE_CHECK(flash_attention_supported(s.d)) << op << ": head dim " << s.d << " has no fused kernel";
  TUNE_CHECK(s.T >= 0 && s.T < (int64_t(1) << 30)) << op << ": " << s.T << " tokens";
  TUNE_CHECK(s.nKV > 0 && s.nH % s.nKV == 0 && s.nH <= 65535)
      << op << ": " << s.nH << " query heads over " << s.nKV << " kv heads";
  const int64_t strides[4] = {s.q_stride, s.k_stride, s.v_stride, s.o_stride};
  const int64_t widths[4] = {s.nH * s.d, s.nKV * s.d, s.nKV * s.d, s.nH * s.d};
  for (int i = 0; i < 4; ++i)
    TUNE_CHECK(strides[i] >= widths[i] && strides[i] % 8 == 0)
        << op << ": row stride " << strides[i] << " (need >= " << widths[i] << ", a multiple of 8)";
}

void check_aligned(const void* p, const char* op, const char* name) {
  TUNE_CHECK(p && reinterpret_cast<uintptr_t>(p) % 16 == 0) << op << ": " << name << " must be 16-byte aligned";
}

size_t dq_acc_bytes(const FlashAttnShape& s) { return (size_t(s.T * s.nH * s.d) * 4 + 255) / 256 * 256; }

}  // namespace

bool flash_attention_supported(int64_t d) { return d == 64 || d == 128 || d == 256; }

void flash_attention_fwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale, void* o,
                         float* lse, const FlashAttnShape& s, void* stream) {
  const char* op = "flash_attention_fwd";
  check_shape(s, op);
  TUNE_CHECK(scale > 0.0f) << op << ": scale " << scale;
  if (s.T == 0) return;
  check_aligned(q, op, "q"), check_aligned(k, op, "k"), check_aligned(v, op, "v"), check_aligned(o, op, "o");
  TUNE_CHECK(lse) << op << ": lse is null";
  const FwdArgs a{static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
                  doc_start, static_cast<bf16*>(o), lse, s.q_stride, s.k_stride, s.v_stride, s.o_stride,
                  int(s.T), int(s.nH / s.nKV), scale * kLog2e};
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (s.d) {
    case 64:
      fwd_launch<64>(a, s.nH, st);
      break;
    case 128:
      if ((TUNE_FA_WGMMA & 1) && flash_wgmma_supported(128)) {
        const WgmmaFwdParams p{a.q,        a.k,        a.v,        a.doc_start, a.o,       a.lse, a.q_stride,
                               a.k_stride, a.v_stride, a.o_stride, a.T,         int(s.nH), a.group, a.scale_log2};
        flash_wgmma_fwd(p, st);
      } else {
        fwd_launch<128>(a, s.nH, st);
      }
      break;
    default:
      fwd_launch<256>(a, s.nH, st);
  }
}

size_t flash_attention_bwd_workspace_bytes(const FlashAttnShape& s) {
  return dq_acc_bytes(s) + size_t(s.nH * s.T) * 4;
}

void flash_attention_bwd(const void* q, const void* k, const void* v, const void* o, const void* d_o,
                         const float* lse, const int32_t* doc_start, float scale, void* dq, void* dk, void* dv,
                         void* workspace, const FlashAttnShape& s, void* stream) {
  const char* op = "flash_attention_bwd";
  check_shape(s, op);
  TUNE_CHECK(scale > 0.0f) << op << ": scale " << scale;
  if (s.T == 0) return;
  const void* ptrs[9] = {q, k, v, o, d_o, dq, dk, dv, workspace};
  const char* names[9] = {"q", "k", "v", "o", "d_o", "dq", "dk", "dv", "workspace"};
  for (int i = 0; i < 9; ++i)
    if (ptrs[i] || i != 5) check_aligned(ptrs[i], op, names[i]);  // dq (5) may be null: left in the workspace
  TUNE_CHECK(lse) << op << ": lse is null";
  float* dq_acc = static_cast<float*>(workspace);
  float* dvec = reinterpret_cast<float*>(static_cast<char*>(workspace) + dq_acc_bytes(s));
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const BwdArgs a{static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
                  static_cast<const bf16*>(d_o), lse, dvec, doc_start, dq_acc, static_cast<bf16*>(dk),
                  static_cast<bf16*>(dv), s.q_stride, s.k_stride, s.v_stride, s.o_stride, int(s.T), int(s.nH),
                  int(s.nH / s.nKV), scale, scale * kLog2e};
  const bf16* o_ = static_cast<const bf16*>(o);
  bf16* dq_ = static_cast<bf16*>(dq);
  switch (s.d) {
    case 64:
      bwd_launch<64>(a, o_, dq_, s.nKV, st);
      break;
    case 128:
      bwd_launch<128>(a, o_, dq_, s.nKV, st);
      break;
    default:
      bwd_launch<256>(a, o_, dq_, s.nKV, st);
  }
}

}  // namespace tune::cuda
