// lora_b_bwd on CUDA: one kernel reads each part's output gradient once and makes both products with mma.sync
// (bf16 in, fp32 accumulators); a second adds up the partial sums. cuBLAS would read dy once per product.
// Main kernel: a CTA per (column block of up to kCb = 64 / R x 128 columns of one part, row split). It walks
// its rows in chunks of 64 and each chunk's 128-column sub-tiles, through a cp.async pipeline of dy sub-tiles
// (64, 128) (the u chunk (64, R) with the first of a chunk). Warp w (of 4) owns columns 32w..32w+31 of every
// sub-tile:
//   dB: those columns (two m16 tiles) += dy^T u over the chunk's rows, in registers for the whole row split;
//   du: the chunk's 64 rows += dy B over those columns, its B fragments in registers for the whole CTA.
// After a chunk's last sub-tile the four warps' du meet in shared memory and the chunk's du (summed over this
// column block) goes to the workspace; at the end the dB fragments go to the workspace (one slice per row
// split). Per sub-tile and warp: 16 ldmatrix and 32 mma (R 16). The reduce kernel then writes du = s (sum
// over the target's column blocks) as bf16 and adds s (sum over the row splits) to dB, in a fixed order: the
// result does not depend on scheduling. Long inputs run in slabs of kSlab rows (bounded workspace).
// Shared-memory tiles as in lora_tile.cuh.
#include <algorithm>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/lora_tile.cuh"
#include "ops/cuda/mma_ptx.cuh"
#include "ops/lora_b_bwd.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 128, kChunk = 64, kSub = 128;
constexpr int64_t kSlab = 16384;

// Two CTAs fit on a multiprocessor (shared memory); the grid is sized to fill one such wave of the device.
int ctas_per_wave() {
  return 2 * multiprocessor_count();
}

struct PartArg {
  const bf16* dy;
  const bf16* u;
  const bf16* b;
  float* db;
  int64_t rows, row0;  // row0: the part's first row among all parts' rows (the dB workspace's layout)
  int target, cb0;     // cb0: its first column block
};
struct Args {
  PartArg p[kLoraBMaxParts];
  int n, n_cb, n_targets, split_rows, cb_cols;  // cb_cols: columns per block, a multiple of 128 up to kCb
  int64_t T, ldy, ldu, total_rows;
  float* gpart;   // (n_cb, T, R): du per column block
  float* dbpart;  // (splits, total_rows, R): dB per row split
};

template <int R>
struct Cfg {
  static_assert(R == 16 || R == 32, "r of 16 or 32");
  static constexpr int kCpr = R / 8;               // 16-byte chunks in a row of u or B
  static constexpr int kNsub = 64 / R;             // sub-tiles per column block
  static constexpr int kCb = kNsub * kSub;         // columns per block
  static constexpr int kNt = R / 8;                // n8 fragments across r
  static constexpr int kStages = R == 16 ? 4 : 3;  // two CTAs still fit on a multiprocessor
  static constexpr int kDyBytes = kChunk * kSub * 2, kStageBytes = kDyBytes + kChunk * R * 2;
  static constexpr int kBBytes = kCb * R * 2, kRedBytes = 4 * kChunk * R * 4;  // red: the warps' du (fp32)
  static constexpr int kSmem = kBBytes + kRedBytes + kStages * kStageBytes;
};

// Rows [t0, t0 + 64) (zeros at or past t_end) of the part's dy columns [c0, c0 + 128) (zeros past its rows)
// and, with_u, of its u, into a stage.
template <int R>
__device__ __forceinline__ void load_stage(uint32_t s, const PartArg& P, const Args& a, int64_t t0,
                                           int64_t t_end, int64_t c0, bool with_u) {
#pragma unroll
  for (int it = 0; it < kChunk * 16 / kThreads; ++it) {
    const int i = it * kThreads + int(threadIdx.x), t = i >> 4, c = i & 15;
    const int64_t row = t0 + t, col = c0 + c * 8;
    const bool ok = row < t_end && col < P.rows;
    cp_async16(s + ychunk(t, c), ok ? P.dy + row * a.ldy + col : P.dy, ok);
  }
  constexpr int cpr = Cfg<R>::kCpr;
  if (!with_u) return;
  for (int i = int(threadIdx.x); i < kChunk * cpr; i += kThreads) {
    const int t = i / cpr, c = i % cpr;
    const int64_t row = t0 + t;
    const bool ok = row < t_end;
    cp_async16(s + Cfg<R>::kDyBytes + rchunk<R>(t, c), ok ? P.u + row * a.ldu + c * 8 : P.u, ok);
  }
}

template <int R>
__global__ void __launch_bounds__(kThreads, 2) lora_b_bwd_kernel(const __grid_constant__ Args a) {
  using C = Cfg<R>;
  constexpr int kStages = C::kStages, NT = C::kNt;
  extern __shared__ __align__(128) unsigned char smem[];
  const int cb = int(blockIdx.x);
  int pi = 0;
  while (pi + 1 < a.n && a.p[pi + 1].cb0 <= cb) ++pi;
  const PartArg& P = a.p[pi];
  const int64_t c_base = int64_t(cb - P.cb0) * a.cb_cols;
  const int64_t left = (P.rows - c_base + kSub - 1) / kSub;
  const int nsub = left < a.cb_cols / kSub ? int(left) : a.cb_cols / kSub;
  const int64_t t_begin = int64_t(blockIdx.y) * a.split_rows;
  const int64_t t_end = a.T < t_begin + a.split_rows ? a.T : t_begin + a.split_rows;
  const int n_tc = int((t_end - t_begin + kChunk - 1) / kChunk), n_units = n_tc * nsub;
  const uint32_t sB = smem_u32(smem), sS = sB + C::kBBytes + C::kRedBytes;
  float* red = reinterpret_cast<float*>(smem + C::kBBytes);  // (4 warps, 64, R)
  const int tid = int(threadIdx.x), lane = tid & 31, w = tid >> 5, lj = lane >> 3, li = lane & 7;

  // The block's rows of B (zeros past the part's rows) go with the first stage.
  for (int i = tid; i < a.cb_cols * C::kCpr; i += kThreads) {
    const int n = i / C::kCpr, c = i % C::kCpr;
    const int64_t row = c_base + n;
    const bool ok = row < P.rows;
    cp_async16(sB + rchunk<R>(n, c), ok ? P.b + row * R + c * 8 : P.b, ok);
  }
  auto load = [&](int k) {  // pipeline unit k (chunk k / nsub, sub-tile k % nsub) into stage k % kStages
    load_stage<R>(sS + (k % kStages) * C::kStageBytes, P, a, t_begin + int64_t(k / nsub) * kChunk, t_end,
                  c_base + (k % nsub) * kSub, k % nsub == 0);
  };
#pragma unroll
  for (int k = 0; k < kStages - 1; ++k) {
    if (k < n_units) load(k);
    cp_async_commit();
  }

  float db[C::kNsub][2][NT][4];
#pragma unroll
  for (int sb = 0; sb < C::kNsub; ++sb)
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) db[sb][mi][nt][e] = 0.0f;
  uint32_t bb[C::kNsub][2][NT][2];  // B fragments of this warp's columns: per sub-tile, two k16 steps
  uint32_t bu[4][NT][2];            // u fragments of the current chunk: four k16 steps of rows

  for (int tc = 0; tc < n_tc; ++tc) {
    float du[4][NT][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) du[mt][nt][e] = 0.0f;
#pragma unroll
    for (int sb = 0; sb < C::kNsub; ++sb) {
      if (sb >= nsub) continue;  // CTA-uniform
      const int k = tc * nsub + sb;
      cp_async_wait<kStages - 2>();
      __syncthreads();  // unit k has landed; every warp is done with unit k - 1, whose stage the next load
                        // takes
      if (k + kStages - 1 < n_units) load(k + kStages - 1);
      cp_async_commit();
      const uint32_t sY = sS + (k % kStages) * C::kStageBytes;
      if (k == 0) {  // B came with unit 0
#pragma unroll
        for (int s2 = 0; s2 < C::kNsub; ++s2)
#pragma unroll
          for (int kk = 0; kk < 2; ++kk) ldsm_b_frags<R, NT>(sB, s2 * kSub + 32 * w + 16 * kk, 0, lane, bb[s2][kk]);
      }
      if (sb == 0) {  // the chunk's u came with its first sub-tile
#pragma unroll
        for (int kt = 0; kt < 4; ++kt) ldsm_b_frags<R, NT>(sY + C::kDyBytes, 16 * kt, 0, lane, bu[kt]);
      }
      // dB (A = dy^T: m this warp's columns, k the chunk's rows; B = u).
#pragma unroll
      for (int kt = 0; kt < 4; ++kt)
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          uint32_t af[4];
          ldsm_x4_t(sY + ychunk(16 * kt + (lj >> 1) * 8 + li, (32 * w + 16 * mi) / 8 + (lj & 1)), af);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mma_bf16(db[sb][mi][nt], af, bu[kt][nt][0], bu[kt][nt][1]);
        }
        // du (A = dy: m the chunk's rows, k this warp's columns; B = B's rows for them).
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          uint32_t af[4];
          ldsm_x4(sY + ychunk(16 * mt + (lj & 1) * 8 + li, (32 * w + 16 * kk) / 8 + (lj >> 1)), af);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mma_bf16(du[mt][nt], af, bb[sb][kk][nt][0], bb[sb][kk][nt][1]);
        }
    }
    // The four warps' du (fragment rows lane / 4 and lane / 4 + 8, columns 2 (lane % 4)) meet in shared
    // memory; the next write to it comes after the next unit's barrier.
    float* rw = red + w * kChunk * R;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int t = 16 * mt + (lane >> 2), col = 8 * nt + 2 * (lane & 3);
        *reinterpret_cast<float2*>(rw + t * R + col) = make_float2(du[mt][nt][0], du[mt][nt][1]);
        *reinterpret_cast<float2*>(rw + (t + 8) * R + col) = make_float2(du[mt][nt][2], du[mt][nt][3]);
      }
    __syncthreads();
    float* gp = a.gpart + int64_t(cb) * a.T * R;
    const int64_t t0 = t_begin + int64_t(tc) * kChunk;
#pragma unroll
    for (int e = 0; e < kChunk * R / 4 / kThreads; ++e) {
      const int i = e * kThreads + tid, t = i / (R / 4), j = i % (R / 4) * 4;
      if (t0 + t >= t_end) continue;
      float4 v = *reinterpret_cast<const float4*>(red + t * R + j);
#pragma unroll
      for (int ww = 1; ww < 4; ++ww) {
        const float4 x = *reinterpret_cast<const float4*>(red + (ww * kChunk + t) * R + j);
        v.x += x.x, v.y += x.y, v.z += x.z, v.w += x.w;
      }
      *reinterpret_cast<float4*>(gp + (t0 + t) * R + j) = v;
    }
  }
  float* dp = a.dbpart + (int64_t(blockIdx.y) * a.total_rows + P.row0 + c_base) * R;
#pragma unroll
  for (int sb = 0; sb < C::kNsub; ++sb) {
    if (sb >= nsub) continue;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int n = sb * kSub + 32 * w + 16 * mi + (lane >> 2), col = 8 * nt + 2 * (lane & 3);
        if (c_base + n < P.rows)
          *reinterpret_cast<float2*>(dp + int64_t(n) * R + col) =
              make_float2(db[sb][mi][nt][0], db[sb][mi][nt][1]);
        if (c_base + n + 8 < P.rows)
          *reinterpret_cast<float2*>(dp + int64_t(n + 8) * R + col) =
              make_float2(db[sb][mi][nt][2], db[sb][mi][nt][3]);
      }
  }
}

// du (T, n_targets R) = s * sum of the target's column blocks, as bf16; then dB += s * sum of the row splits.
// Four consecutive r values per thread.
template <int R>
__global__ void lora_b_reduce_kernel(const __grid_constant__ Args a, int splits, float s, bf16* du,
                                     int64_t lddu) {
  constexpr int Q = R / 4;
  const int64_t n_du = a.T * a.n_targets * Q, n_db = a.total_rows * Q;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_du + n_db;
       i += int64_t(gridDim.x) * blockDim.x) {
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    auto add = [&](const float* p) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
    };
    if (i < n_du) {  // target-major: a warp's threads share the target (and so the loops below)
      const int tg = int(i / (a.T * Q)), j = int(i % Q) * 4;
      const int64_t t = i / Q % a.T;
      for (int p = 0; p < a.n; ++p) {
        if (a.p[p].target != tg) continue;
        const int n_cb = int((a.p[p].rows + a.cb_cols - 1) / a.cb_cols);
#pragma unroll 8
        for (int cb = a.p[p].cb0; cb < a.p[p].cb0 + n_cb; ++cb)
          add(a.gpart + (int64_t(cb) * a.T + t) * R + j);
      }
      uint2 o;
      o.x = pack_bf16(s * acc.x, s * acc.y);
      o.y = pack_bf16(s * acc.z, s * acc.w);
      *reinterpret_cast<uint2*>(du + t * lddu + tg * R + j) = o;
    } else {
      const int64_t k = i - n_du, rg = k / Q;
      const int j = int(k % Q) * 4;
      int p = 0;
      while (p + 1 < a.n && a.p[p + 1].row0 <= rg) ++p;
#pragma unroll 8
      for (int sp = 0; sp < splits; ++sp) add(a.dbpart + (int64_t(sp) * a.total_rows + rg) * R + j);
      float4* d = reinterpret_cast<float4*>(a.p[p].db + (rg - a.p[p].row0) * R + j);
      float4 v = *d;
      v.x += s * acc.x, v.y += s * acc.y, v.z += s * acc.z, v.w += s * acc.w;
      *d = v;
    }
  }
}

// Columns per block, row splits and rows per split for T rows (a slab) of these parts: the widest blocks
// (fewest partial sums) whose grid fills at least 95% of the CTA slots of the waves it takes, else the
// fullest grid. A split has at least two 64-row chunks. With max_bytes > 0, only plans whose partial sums fit
// in that many bytes: a workspace sized for T rows then serves every call with fewer (the widest blocks fit,
// with as many splits as the space allows).
struct Plan {
  int cb_cols = 0, n_cb = 0, split_rows = 0, splits = 0;
  int64_t total_rows = 0;
};
int64_t align256(int64_t b) {
  return (b + 255) / 256 * 256;
}
// Workspace bytes of a plan over T rows: du per column block, then dB per row split.
int64_t gpart_bytes(const Plan& pl, int64_t T, int64_t r) {
  return align256(int64_t(pl.n_cb) * T * r * 4);
}
int64_t plan_bytes(const Plan& pl, int64_t T, int64_t r) {
  return gpart_bytes(pl, T, r) + int64_t(pl.splits) * pl.total_rows * r * 4;
}
Plan plan(int64_t T, int64_t r, const int64_t* rows, int n, int64_t max_bytes = 0) {
  const int64_t slots = ctas_per_wave(), widest = 64 / r * kSub;
  Plan best;
  double best_fill = -1;
  for (int64_t cols = widest; cols >= kSub; cols -= kSub) {
    Plan pl;
    pl.cb_cols = int(cols);
    for (int i = 0; i < n; ++i) {
      pl.n_cb += int((rows[i] + cols - 1) / cols);
      pl.total_rows += rows[i];
    }
    int64_t want = std::clamp<int64_t>(slots / pl.n_cb, 1, std::max<int64_t>(1, (T + 127) / 128));
    if (max_bytes > 0) {  // the splits that fit beside this plan's du partial sums
      want = std::min(want, (max_bytes - gpart_bytes(pl, T, r)) / (pl.total_rows * r * 4));
      if (want < 1) continue;
    }
    pl.split_rows = int(((T + want - 1) / want + kChunk - 1) / kChunk * kChunk);
    pl.splits = int((T + pl.split_rows - 1) / pl.split_rows);  // <= want
    const int64_t ctas = int64_t(pl.n_cb) * pl.splits;
    const double fill = double(ctas) / double((ctas + slots - 1) / slots * slots);
    if (fill >= 0.95) return pl;
    if (fill > best_fill) best = pl, best_fill = fill;
  }
  return best;
}

template <int R>
void launch(const LoraBPart* parts, int n, int64_t T, int64_t ldy, int64_t ldu, float s, void* du,
            int64_t lddu, void* workspace, int64_t workspace_bytes, cudaStream_t st) {
  static bool attr = false;
  if (!attr) {
    CUDA_CHECK(cudaFuncSetAttribute(lora_b_bwd_kernel<R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg<R>::kSmem));
    attr = true;
  }
  int64_t rows[kLoraBMaxParts];
  for (int i = 0; i < n; ++i) rows[i] = parts[i].rows;
  for (int64_t t0 = 0; t0 < T; t0 += kSlab) {
    const int64_t Ts = std::min(kSlab, T - t0);
    const Plan pl = plan(Ts, R, rows, n, workspace_bytes);
    TUNE_CHECK(pl.splits > 0 && plan_bytes(pl, Ts, R) <= workspace_bytes)
        << "lora_b_bwd: a workspace of " << workspace_bytes << " bytes is too small for " << Ts << " rows";
    Args a{};
    a.n = n;
    a.n_cb = pl.n_cb;
    a.split_rows = pl.split_rows;
    a.cb_cols = pl.cb_cols;
    a.T = Ts;
    a.ldy = ldy;
    a.ldu = ldu;
    a.total_rows = pl.total_rows;
    a.gpart = static_cast<float*>(workspace);
    a.dbpart = reinterpret_cast<float*>(static_cast<char*>(workspace) + gpart_bytes(pl, Ts, R));
    int cb0 = 0, n_targets = 0;
    int64_t row0 = 0;
    for (int i = 0; i < n; ++i) {
      const LoraBPart& q = parts[i];
      a.p[i] = {static_cast<const bf16*>(q.dy) + t0 * ldy,
                static_cast<const bf16*>(q.u) + t0 * ldu,
                static_cast<const bf16*>(q.b),
                q.db,
                q.rows,
                row0,
                q.target,
                cb0};
      cb0 += int((q.rows + pl.cb_cols - 1) / pl.cb_cols);
      row0 += q.rows;
      n_targets = std::max(n_targets, q.target + 1);
    }
    a.n_targets = n_targets;
    lora_b_bwd_kernel<R><<<dim3(unsigned(pl.n_cb), unsigned(pl.splits)), kThreads, Cfg<R>::kSmem, st>>>(a);
    TUNE_CUDA_LAUNCHED();
    const int64_t work = Ts * n_targets * (R / 4) + pl.total_rows * (R / 4);
    lora_b_reduce_kernel<R>
        <<<grid_blocks(work, 256), 256, 0, st>>>(a, pl.splits, s, static_cast<bf16*>(du) + t0 * lddu, lddu);
    TUNE_CUDA_LAUNCHED();
  }
}

}  // namespace

bool lora_b_bwd_supported(const LoraBPart* parts, int n, int64_t r, int64_t ldy, int64_t ldu, const void* du,
                          int64_t lddu) {
  auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if ((r != 16 && r != 32) || n < 1 || n > kLoraBMaxParts || ldy % 8 || ldu % 8 || lddu % 4 ||
      reinterpret_cast<uintptr_t>(du) % 8)
    return false;
  for (int i = 0; i < n; ++i) {
    const LoraBPart& p = parts[i];
    if (p.rows <= 0 || p.rows % 8 || !a16(p.dy) || !a16(p.u) || !a16(p.b) || !a16(p.db) || p.target < 0)
      return false;
  }
  return true;
}

int64_t lora_b_bwd_workspace_bytes(int64_t T, int64_t r, const int64_t* rows, int n) {
  const int64_t Ts = std::min(kSlab, T);  // a full slab: fewer rows (a last slab, a shorter call) fit in it
  return plan_bytes(plan(Ts, r, rows, n), Ts, r);
}

void lora_b_bwd(const LoraBPart* parts, int n, int64_t T, int64_t r, int64_t ldy, int64_t ldu, float s,
                void* du, int64_t lddu, void* workspace, int64_t workspace_bytes, void* stream) {
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (T <= 0) return;
  switch (r) {
    case 16:
      launch<16>(parts, n, T, ldy, ldu, s, du, lddu, workspace, workspace_bytes, st);
      break;
    case 32:
      launch<32>(parts, n, T, ldy, ldu, s, du, lddu, workspace, workspace_bytes, st);
      break;
    default:
      TUNE_CHECK(false) << "lora_b_bwd: r " << r << " (the kernel takes 16 or 32)";
  }
}

}  // namespace tune::cuda
