// swiglu_lora_bwd on CUDA (see ops/swiglu_lora_bwd.h). A CTA (4 warps; two fit on a multiprocessor, so that
// one's products overlap the other's element-wise work) takes a block of 128 of the I columns and a split of
// the rows, and walks the split in chunks of 32 rows through a cp.async pipeline. A stage holds the chunk's
// g, u and dh sub-tiles (32, 128) and its rows of the LoRA u (gate | up) and of gd. Each chunk:
//   1. every thread turns its 16-byte pieces of g, u, dh into dg, du, h in place in shared memory, and stores
//      dg and du to gu's rows (coalesced, 16 bytes);
//   2. warp w takes columns 32 w..32 w + 31 of the sub-tiles, with mma.sync (bf16 in, fp32 accumulators,
//      fragments as in lora_b_bwd.cu):
//        dB_gate, dB_up (its columns) += dg^T u_gate, du^T u_up   kept in registers over the whole split
//        dA_down^T (its columns) += h^T gd                         likewise
//        g_gate, g_up (the chunk's rows) = dg B_gate, du B_up over its columns;
//   3. the four warps' shares of g meet in shared memory in a fixed order; the CTA adds the sum into an fp32
//      accumulator (T, 2r) with vector atomics (the other column blocks add theirs). Column blocks start at
//      different chunks of their split, so that few add into the same rows at once.
// At the end each warp adds its dB and dA into the fp32 gradients by atomics. A second kernel writes g = s
// acc as bf16.
#include <algorithm>

#include "core/cuda_check.h"
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/lora_tile.cuh"
#include "ops/cuda/mma_ptx.cuh"
#include "ops/swiglu_lora_bwd.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 128, kChunk = 32, kCols = 128, kStages = 3;
constexpr int64_t kSlab = 16384;

template <int R>
struct Cfg {
  static constexpr int kTile = kChunk * kCols * 2;  // one (32, 128) bf16 sub-tile
  static constexpr int kUBytes = kChunk * 2 * R * 2, kGdBytes = kChunk * R * 2;
  static constexpr int kStageBytes = 3 * kTile + kUBytes + kGdBytes;  // g, u, dh, then u (gate | up), gd
  static constexpr int kBBytes = 2 * kCols * R * 2;                   // the block's rows of B_gate, B_up
  static constexpr int kRedLd = 2 * R + 8;  // a row of a column warp's g (fp32), padded: fewer bank conflicts
  static constexpr int kRedBytes = 4 * kChunk * kRedLd * 4;
  static constexpr int kSmem = kBBytes + kRedBytes + kStages * kStageBytes;
};

struct Args {
  bf16* gu;
  const bf16 *dh, *u, *b_gate, *b_up, *gd;
  float *db_gate, *db_up, *da, *gacc;
  int64_t T, I, ldgu, lddh, ldu, ldgd, split_rows;
  float s;
};

// Rows [t0, t0 + 32) (zeros at or past t_end) of the block's columns of g, u, dh (zeros past I), and of the
// LoRA u and gd, into the stage at s.
template <int R>
__device__ __forceinline__ void load_stage(uint32_t s, const Args& a, int64_t t0, int64_t t_end, int64_t c0) {
  using C = Cfg<R>;
#pragma unroll
  for (int it = 0; it < kChunk * 16 / kThreads; ++it) {
    const int i = it * kThreads + int(threadIdx.x), t = i >> 4, c = i & 15;
    const int64_t row = t0 + t, col = c0 + c * 8;
    const bool ok = row < t_end && col < a.I;
    const bf16* g = ok ? a.gu + row * a.ldgu + col : a.gu;
    cp_async16(s + ychunk(t, c), g, ok);
    cp_async16(s + C::kTile + ychunk(t, c), ok ? g + a.I : a.gu, ok);
    cp_async16(s + 2 * C::kTile + ychunk(t, c), ok ? a.dh + row * a.lddh + col : a.dh, ok);
  }
  constexpr int cpu2 = 2 * R / 8, cpr = R / 8;
  for (int i = int(threadIdx.x); i < kChunk * cpu2; i += kThreads) {
    const int t = i / cpu2, c = i % cpu2;
    const bool ok = t0 + t < t_end;
    cp_async16(s + 3 * C::kTile + rchunk<2 * R>(t, c), ok ? a.u + (t0 + t) * a.ldu + c * 8 : a.u, ok);
  }
  if (!a.gd) return;
  for (int i = int(threadIdx.x); i < kChunk * cpr; i += kThreads) {
    const int t = i / cpr, c = i % cpr;
    const bool ok = t0 + t < t_end;
    cp_async16(s + 3 * C::kTile + C::kUBytes + rchunk<R>(t, c), ok ? a.gd + (t0 + t) * a.ldgd + c * 8 : a.gd,
               ok);
  }
}

template <int R>
__global__ void __launch_bounds__(kThreads, 2) swiglu_lora_bwd_kernel(const __grid_constant__ Args a) {
  using C = Cfg<R>;
  constexpr int NT = R / 8, cpr = R / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const int64_t c0 = int64_t(blockIdx.x) * kCols, t_begin = int64_t(blockIdx.y) * a.split_rows;
  const int64_t t_end = a.T < t_begin + a.split_rows ? a.T : t_begin + a.split_rows;
  const int n_tc = int((t_end - t_begin + kChunk - 1) / kChunk), rot = int(blockIdx.x) % n_tc;
  // Column blocks start at different chunks of the split: fewer of them add into the same rows of g at once.
  auto chunk_row = [&](int k) { return t_begin + int64_t((k + rot) % n_tc) * kChunk; };
  const uint32_t sB = smem_u32(smem), sS = sB + C::kBBytes + C::kRedBytes;
  float* red = reinterpret_cast<float*>(smem + C::kBBytes);  // (4 warps, 32, 2R) [kRedLd]
  const int tid = int(threadIdx.x), lane = tid & 31, wc = tid >> 5, lj = lane >> 3, li = lane & 7;
  const bool with_gd = a.gd != nullptr;

  // The block's rows of both B's (zeros past I) go with the first stage.
  for (int i = tid; i < 2 * kCols * cpr; i += kThreads) {
    const int part = i / (kCols * cpr), n = i / cpr % kCols, c = i % cpr;
    const int64_t row = c0 + n;
    const bool ok = row < a.I;
    const bf16* b = part ? a.b_up : a.b_gate;
    cp_async16(sB + part * kCols * R * 2 + rchunk<R>(n, c), ok ? b + row * R + c * 8 : b, ok);
  }
#pragma unroll
  for (int k = 0; k < kStages - 1; ++k) {
    if (k < n_tc) load_stage<R>(sS + k * C::kStageBytes, a, chunk_row(k), t_end, c0);
    cp_async_commit();
  }

  float db[2][2][NT][4], da[2][NT][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) db[0][mi][nt][e] = db[1][mi][nt][e] = da[mi][nt][e] = 0.0f;
  uint32_t bb[2][2][NT][2];  // B fragments of this warp's columns: per part, two k16 steps

  for (int tc = 0; tc < n_tc; ++tc) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // chunk tc has landed; every thread is done with chunk tc - 1 and its stage
    if (tc + kStages - 1 < n_tc)
      load_stage<R>(sS + ((tc + kStages - 1) % kStages) * C::kStageBytes, a, chunk_row(tc + kStages - 1),
                    t_end, c0);
    cp_async_commit();
    const uint32_t sY = sS + (tc % kStages) * C::kStageBytes;
    unsigned char* pY = smem + (sY - sB);
    const int64_t t0 = chunk_row(tc);
    if (tc == 0) {  // the B's came with chunk 0
#pragma unroll
      for (int part = 0; part < 2; ++part)
#pragma unroll
        for (int kk = 0; kk < 2; ++kk)
          ldsm_b_frags<R, NT>(sB + part * kCols * R * 2, 32 * wc + 16 * kk, 0, lane, bb[part][kk]);
    }

    // 1. g, u, dh -> dg, du, h in place (zeros stay zeros); dg, du to global.
#pragma unroll
    for (int it = 0; it < kChunk * 16 / kThreads; ++it) {
      const int i = it * kThreads + tid, t = i >> 4, c = i & 15;
      const uint32_t off = ychunk(t, c);
      uint4* pg = reinterpret_cast<uint4*>(pY + off);
      uint4* pu = reinterpret_cast<uint4*>(pY + C::kTile + off);
      uint4* pd = reinterpret_cast<uint4*>(pY + 2 * C::kTile + off);
      float g[8], u[8], d[8], dg[8], du[8], h[8];
      unpack8(*pg, g);
      unpack8(*pu, u);
      unpack8(*pd, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) {  // fast ex2 and rcp (bf16 results): fewer instructions, which bound the kernel
        const float sg = rcp_approx(1.0f + exp2_approx(-1.4426950408889634f * g[e]));
        const float a = d[e] * sg, gs = g[e] * sg;  // dg = d u sg (1 + g (1 - sg)), du = d g sg, h = g sg u
        dg[e] = a * u[e] * ((1.0f + g[e]) - gs);
        du[e] = a * g[e];
        h[e] = gs * u[e];
      }
      const uint4 vg = pack8(dg), vu = pack8(du);
      *pg = vg;
      *pu = vu;
      if (with_gd) *pd = pack8(h);
      const int64_t row = t0 + t, col = c0 + c * 8;
      if (row < t_end && col < a.I) {
        bf16* o = a.gu + row * a.ldgu + col;
        *reinterpret_cast<uint4*>(o) = vg;
        *reinterpret_cast<uint4*>(o + a.I) = vu;
      }
    }
    __syncthreads();

    // 2. The LoRA u and gd fragments of the chunk's rows.
    uint32_t bu[2][2][NT][2], gf[2][NT][2];
#pragma unroll
    for (int part = 0; part < 2; ++part)
#pragma unroll
      for (int kt = 0; kt < 2; ++kt)
        ldsm_b_frags<2 * R, NT>(sY + 3 * C::kTile, 16 * kt, part * cpr, lane, bu[part][kt]);
    if (with_gd) {
#pragma unroll
      for (int kt = 0; kt < 2; ++kt)
        ldsm_b_frags<R, NT>(sY + 3 * C::kTile + C::kUBytes, 16 * kt, 0, lane, gf[kt]);
    }
    // dB and dA (A = the sub-tile transposed: m this warp's columns, k its rows).
#pragma unroll
    for (int kt = 0; kt < 2; ++kt)
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const uint32_t at = ychunk(16 * kt + (lj >> 1) * 8 + li, (32 * wc + 16 * mi) / 8 + (lj & 1));
#pragma unroll
        for (int part = 0; part < 2; ++part) {
          uint32_t af[4];
          ldsm_x4_t(sY + part * C::kTile + at, af);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            mma_bf16(db[part][mi][nt], af, bu[part][kt][nt][0], bu[part][kt][nt][1]);
        }
        if (with_gd) {
          uint32_t af[4];
          ldsm_x4_t(sY + 2 * C::kTile + at, af);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mma_bf16(da[mi][nt], af, gf[kt][nt][0], gf[kt][nt][1]);
        }
      }
    // g (A = the sub-tile: m the chunk's rows, k this warp's columns; B = B's rows for them).
    float go[2][2][NT][4];
#pragma unroll
    for (int part = 0; part < 2; ++part)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) go[part][mt][nt][e] = 0.0f;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int kk = 0; kk < 2; ++kk)
#pragma unroll
        for (int part = 0; part < 2; ++part) {
          uint32_t af[4];
          ldsm_x4(
              sY + part * C::kTile + ychunk(16 * mt + (lj & 1) * 8 + li, (32 * wc + 16 * kk) / 8 + (lj >> 1)),
              af);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            mma_bf16(go[part][mt][nt], af, bb[part][kk][nt][0], bb[part][kk][nt][1]);
        }
    // 3. The column warps' g meet in shared memory (fragment rows lane / 4 and lane / 4 + 8, columns 2 (lane
    // % 4)); the next write to it comes after the next chunk's first barrier.
    float* rw = red + wc * kChunk * C::kRedLd;
#pragma unroll
    for (int part = 0; part < 2; ++part)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int t = 16 * mt + (lane >> 2), col = part * R + 8 * nt + 2 * (lane & 3);
          *reinterpret_cast<float2*>(rw + t * C::kRedLd + col) =
              make_float2(go[part][mt][nt][0], go[part][mt][nt][1]);
          *reinterpret_cast<float2*>(rw + (t + 8) * C::kRedLd + col) =
              make_float2(go[part][mt][nt][2], go[part][mt][nt][3]);
        }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < kChunk * 2 * R / 4 / kThreads; ++e) {
      const int i = e * kThreads + tid, t = i / (2 * R / 4), j = i % (2 * R / 4) * 4;
      if (t0 + t >= t_end) continue;
      float4 v = *reinterpret_cast<const float4*>(red + t * C::kRedLd + j);
#pragma unroll
      for (int ww = 1; ww < 4; ++ww) {
        const float4 x = *reinterpret_cast<const float4*>(red + (ww * kChunk + t) * C::kRedLd + j);
        v.x += x.x, v.y += x.y, v.z += x.z, v.w += x.w;
      }
      atomicAdd(reinterpret_cast<float4*>(a.gacc + (t0 + t) * 2 * R + j), v);
    }
  }

  // This warp's dB and dA (its columns, the split's rows) into the fp32 gradients.
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int col = 8 * nt + 2 * (lane & 3);
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int64_t row = c0 + 32 * wc + 16 * mi + (lane >> 2) + 8 * hf;
        if (row >= a.I) continue;
#pragma unroll
        for (int part = 0; part < 2; ++part)
          atomicAdd(reinterpret_cast<float2*>((part ? a.db_up : a.db_gate) + row * R + col),
                    make_float2(a.s * db[part][mi][nt][2 * hf], a.s * db[part][mi][nt][2 * hf + 1]));
        if (with_gd) {
          atomicAdd(a.da + int64_t(col) * a.I + row, da[mi][nt][2 * hf]);
          atomicAdd(a.da + int64_t(col + 1) * a.I + row, da[mi][nt][2 * hf + 1]);
        }
      }
    }
}

// acc (n floats) = 0: a kernel rather than a memset, which in a CUDA graph leaves the device idle around it.
__global__ void swiglu_lora_zero_kernel(float4* acc, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x)
    acc[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// g (T, 2R) = s acc, as bf16; four values a thread.
template <int R>
__global__ void swiglu_lora_g_kernel(const float* acc, int64_t T, float s, bf16* g, int64_t ldg) {
  constexpr int Q = 2 * R / 4;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * Q;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / Q;
    const int j = int(i % Q) * 4;
    const float4 v = *reinterpret_cast<const float4*>(acc + t * 2 * R + j);
    uint2 o;
    o.x = pack_bf16(s * v.x, s * v.y);
    o.y = pack_bf16(s * v.z, s * v.w);
    *reinterpret_cast<uint2*>(g + t * ldg + j) = o;
  }
}

// Two CTAs a multiprocessor (shared memory, registers).
int ctas_per_wave() {
  return 2 * multiprocessor_count();
}

// Rows per split for T rows over n_cb column blocks: the fewest splits (at most 16, each of whole chunks)
// whose grid fills at least 95% of the waves it takes, else the fullest.
int64_t split_rows(int64_t T, int64_t n_cb) {
  const int64_t slots = ctas_per_wave(), most = std::clamp<int64_t>(T / (2 * kChunk), 1, 16);
  int64_t best = 1;
  double best_fill = -1;
  for (int64_t want = 1; want <= most; ++want) {
    const int64_t ctas = n_cb * want;
    const double fill = double(ctas) / double((ctas + slots - 1) / slots * slots);
    if (fill >= 0.95) {
      best = want;
      break;
    }
    if (fill > best_fill) best = want, best_fill = fill;
  }
  return ((T + best - 1) / best + kChunk - 1) / kChunk * kChunk;
}

template <int R>
void launch(const SwigluLoraBwd& p, float* acc, cudaStream_t st) {
  static bool attr = false;
  if (!attr) {
    CUDA_CHECK(cudaFuncSetAttribute(swiglu_lora_bwd_kernel<R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Cfg<R>::kSmem));
    attr = true;
  }
  const int64_t n_cb = (p.I + kCols - 1) / kCols;
  for (int64_t t0 = 0; t0 < p.T; t0 += kSlab) {
    const int64_t Ts = std::min(kSlab, p.T - t0);
    swiglu_lora_zero_kernel<<<grid_blocks(Ts * 2 * R / 4, 256), 256, 0, st>>>(reinterpret_cast<float4*>(acc),
                                                                               Ts * 2 * R / 4);
    TUNE_CUDA_LAUNCHED();
    Args a{};
    a.gu = static_cast<bf16*>(p.gu) + t0 * p.ldgu;
    a.dh = static_cast<const bf16*>(p.dh) + t0 * p.lddh;
    a.u = static_cast<const bf16*>(p.u) + t0 * p.ldu;
    a.b_gate = static_cast<const bf16*>(p.b_gate);
    a.b_up = static_cast<const bf16*>(p.b_up);
    a.gd = p.gd ? static_cast<const bf16*>(p.gd) + t0 * p.ldgd : nullptr;
    a.db_gate = p.db_gate;
    a.db_up = p.db_up;
    a.da = p.da;
    a.gacc = acc;
    a.T = Ts;
    a.I = p.I;
    a.ldgu = p.ldgu;
    a.lddh = p.lddh;
    a.ldu = p.ldu;
    a.ldgd = p.ldgd;
    a.split_rows = split_rows(Ts, n_cb);
    a.s = p.s;
    const unsigned splits = unsigned((Ts + a.split_rows - 1) / a.split_rows);
    swiglu_lora_bwd_kernel<R><<<dim3(unsigned(n_cb), splits), kThreads, Cfg<R>::kSmem, st>>>(a);
    TUNE_CUDA_LAUNCHED();
    swiglu_lora_g_kernel<R><<<grid_blocks(Ts * 2 * R / 4, 256), 256, 0, st>>>(
        acc, Ts, p.s, static_cast<bf16*>(p.g) + t0 * p.ldg, p.ldg);
    TUNE_CUDA_LAUNCHED();
  }
}

}  // namespace

bool swiglu_lora_bwd_supported(const SwigluLoraBwd& p) {
  auto a16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  if (p.r != 16 || p.T <= 0 || p.I <= 0 || p.I % 8 || p.ldgu % 8 || p.lddh % 8 || p.ldu % 8 || p.ldg % 4 ||
      p.ldgu < 2 * p.I || p.lddh < p.I || p.ldu < 2 * p.r || p.ldg < 2 * p.r)
    return false;
  if (!a16(p.gu) || !a16(p.dh) || !a16(p.u) || !a16(p.b_gate) || !a16(p.b_up) || !a16(p.db_gate) ||
      !a16(p.db_up) || reinterpret_cast<uintptr_t>(p.g) % 8)
    return false;
  if (p.gd && (p.ldgd % 8 || p.ldgd < p.r || !a16(p.gd) || !p.da)) return false;
  return true;
}

int64_t swiglu_lora_bwd_workspace_bytes(int64_t T, int64_t r) {
  return std::min(kSlab, T) * 2 * r * 4;
}

void swiglu_lora_bwd(const SwigluLoraBwd& p, void* workspace, int64_t workspace_bytes, void* stream) {
  TUNE_CHECK(swiglu_lora_bwd_supported(p))
      << "swiglu_lora_bwd: shapes the kernel does not take (r " << p.r << ", I " << p.I << ")";
  TUNE_CHECK(workspace_bytes >= swiglu_lora_bwd_workspace_bytes(p.T, p.r) &&
             reinterpret_cast<uintptr_t>(workspace) % 16 == 0)
      << "swiglu_lora_bwd: a workspace of " << workspace_bytes << " bytes is too small for " << p.T
      << " rows, or not 16-byte aligned";
  launch<16>(p, static_cast<float*>(workspace), static_cast<cudaStream_t>(stream));
}

}  // namespace tune::cuda
