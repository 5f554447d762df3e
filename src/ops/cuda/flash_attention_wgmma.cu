// Fused causal attention for head dim 128 on Hopper (sm_90a): the FlashAttention-3 route. Warpgroups (4 warps)
// issue wgmma (m64nNk16, bf16 in, fp32 accumulators) on tiles in shared memory in the 128-byte-swizzled layout
// wgmma reads; one layout serves every operand: a tile of R rows x 128 dims is stored as two column blocks of 64
// dims, [2][R][64] bf16, row r's 16-byte chunk c at chunk c ^ (r % 8) (TMA's 128-byte swizzle writes exactly this
// for a box of 64 columns). Read along the dims it is a K-major operand; read along the rows, an MN-major one.
// Forward: CTA per (query head, 128 queries), warp-specialised: a producer warpgroup brings Q and each key tile of
// 128 (from the diagonal back to the first document start) by TMA into mbarrier-guarded stages; two consumer
// warpgroups of 64 queries each run S = Q K^T by wgmma from shared memory, the online softmax in registers (log2
// domain) and O += P V with P as the register A operand, taking turns to issue S ("ping-pong") so that one's
// softmax runs while the tensor cores work for the other, and never meeting at a CTA barrier.
// Backward: CTA per (kv head, 128 keys), warpgroup w owns keys 64w..64w+63 and keeps their dK and dV (fp32) in
// registers while the CTA walks the query tiles of 64 that see a key of the tile, for each query head of the
// group. K and V once, and Q and dO of each step (double-buffered) come by TMA, one thread issuing; the rows' lse
// and D by cp.async. Per step: S^T = K Q^T and dP^T = V dO^T (wgmma from shared memory), P^T and
// dS^T = P^T (dP^T - D) in registers, dV += P^T dO and dK += dS^T Q (A from registers), dS^T to shared memory
// (double-buffered); dQ = dS K of the step (64 queries x 64 dims per warpgroup) is issued in the next step, beside
// its dK, and goes through a shared-memory tile that one thread adds into the workspace's fp32 accumulators by TMA
// (cp.reduce.async.bulk). One CTA barrier per step.
// ptxas serializes the whole wgmma pipeline (info C7513-C7515) when a register an in-flight wgmma reads or writes
// is touched by other instructions, or when the pipeline differs between control paths: hence the register
// fences, the first backward step as its own instance, and softmax results in registers apart from S.
// The rest (checks, D, dq from its accumulators) is flash_attention.cu's.
#include "ops/cuda/flash_attention_wgmma.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <climits>

#include "core/cuda_check.h"
#include "ops/cuda/flash_attention_ptx.cuh"

namespace tune::cuda {

namespace {

using namespace flash;  // PTX wrappers and constants shared with the mma.sync kernels

constexpr int kD = 128;                     // head dim
constexpr int kThreads = 256;               // backward: two warpgroups
constexpr int kFwdThreads = 384;            // forward: a producer and two consumer warpgroups
constexpr int kFwdStages = 2;               // forward: K/V stages (3 measured no faster)
constexpr int kFwdBR = 128, kFwdBC = 128;   // forward: queries per CTA, keys per tile
constexpr int kBwdBR = 64, kBwdBC = 128;    // backward: queries per step, keys per CTA
// Shared memory. Forward: Q (32 KB), K and V per stage (32 KB a tile), 7 barriers. Backward: K, V (32 KB each),
// Q and dO two stages each (16 KB a tile), dS^T (128 keys x 64 queries, 16 KB) two stages, each warpgroup's dQ
// (64 queries x 64 dims, fp32, 16 KB), lse / D / doc_start of the two stages' queries, 3 barriers. Both: 1 KB more
// to align the base to 1024 bytes (the swizzle pattern repeats every 1024).
constexpr size_t kFwdSmem = (1 + 2 * kFwdStages) * 32768 + 8 * (1 + 3 * kFwdStages) + 1024;
constexpr size_t kBwdSmem = 12 * 16384 + 6 * kBwdBR * 4 + 3 * 8 + 1024;
static_assert(kFwdBR == 128 && kFwdBC == 128 && kBwdBR == 64 && kBwdBC == 128, "the kernels hard-code these");

// The kernels' bodies exist only in the sm_90a image; elsewhere (the portable PTX) they are empty, and
// flash_wgmma_supported() keeps them from being launched there.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TUNE_FA_WGMMA_BODY 1
#else
#define TUNE_FA_WGMMA_BODY 0
#endif

#if TUNE_FA_WGMMA_BODY

// ---- PTX wrappers -------------------------------------------------------------------------------------------

// Shared memory written through the generic proxy (cp.async, stores) is about to be read by wgmma (async proxy).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Named barrier `id` over `count` threads: sync waits for the count, arrive counts itself without waiting.
__device__ __forceinline__ void named_barrier_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count));
}
__device__ __forceinline__ void named_barrier_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of accumulators across wgmma issue and wait.
template <int N>
__device__ __forceinline__ void reg_fence(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// mbarriers (shared::cta, 64-bit) and TMA. A full barrier counts one arrival (the producer's expect_tx) plus the
// bytes of the copies it guards; an empty barrier counts the consumers' arrivals.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fence_mbar_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the barrier's phase with the given parity has completed; the time limit (ns) lets the waiting thread
// sleep until then rather than return at once and spin.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1, %2;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity), "r"(10000000u)
      : "memory");
}
// A box of the 2-D tensor map (columns c, rows r onwards) into shared memory at dst; completes on bar.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c, int r, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c), "r"(r), "r"(bar)
      : "memory");
}
// Adds a box of shared memory (fp32) into the 2-D tensor map's elements from column c, row r (rows past the end
// are skipped), in the current bulk group; the source must not change until the group has read it.
__device__ __forceinline__ void tma_reduce_add_2d(const CUtensorMap* map, int c, int r, uint32_t src) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.2d.global.shared::cta.add.tile.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
          reinterpret_cast<uint64_t>(map)),
      "r"(c), "r"(r), "r"(src)
      : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// The bulk groups committed by this thread have read their shared memory (all: have completed).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// A tile of `rows` rows x kD columns from column c, row r: two boxes of 64 columns into the [2][rows][64] layout.
__device__ __forceinline__ void tma_load_tile(uint32_t dst, const CUtensorMap* map, int c, int r, int rows,
                                              uint32_t bar) {
  tma_load_2d(dst, map, c, r, bar);
  tma_load_2d(dst + rows * 128, map, c + 64, r, bar);
}
// Moves registers between warpgroups: the producer gives up what the consumers then take.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading byte offset (K-major: unused; MN-major:
// between 64-element column blocks), stride byte offset 1024 (between groups of 8 rows of 128 bytes).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo) {
  return uint64_t((addr >> 4) & 0x3FFF) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

// ---- wgmma (generated shapes: the operand lists must be literal) ----

// d (64 x 64, f32) (+)= A (64 x 16, smem) * B (16 x 64, smem); TA / TB: the operand is MN-major.
template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss_n64(float (&d)[32], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, %35, %36;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

// d (64 x 128, f32) (+)= A (64 x 16, smem) * B (16 x 128, smem); TA / TB: the operand is MN-major.
template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, %67, %68;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

// d (64 x 128, f32) += A (64 x 16, registers: the m16n8k16 A fragment of this warp's 16 rows) * B (16 x 128,
// smem); TB: B is MN-major.
template <int TB>
__device__ __forceinline__ void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate), "n"(TB));
}

// The m16n8k16 A fragment of columns [16 kk, 16 kk + 16) of a 64 x N accumulator, as bf16 (the accumulator layout
// of wgmma is that of mma.sync repeated over 8-column blocks: d[4j..4j+3] = rows g, g, g+8, g+8 of block j).
template <int N>
__device__ __forceinline__ void acc_to_a(const float (&d)[N], int kk, uint32_t (&a)[4]) {
  a[0] = pack_bf16(d[8 * kk], d[8 * kk + 1]);
  a[1] = pack_bf16(d[8 * kk + 2], d[8 * kk + 3]);
  a[2] = pack_bf16(d[8 * kk + 4], d[8 * kk + 5]);
  a[3] = pack_bf16(d[8 * kk + 6], d[8 * kk + 7]);
}

// ---- forward ------------------------------------------------------------------------------------------------

// S = Q K^T for this warpgroup's 64 queries x 128 keys (8 steps of 16 dims), issued and committed, not waited.
__device__ __forceinline__ void fwd_issue_s(float (&s)[64], uint32_t sQw, uint32_t sK) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 8; ++kk)
    wgmma_ss_n128<0, 0>(s, sw128_desc(sQw + (kk >> 2) * 16384 + (kk & 3) * 32, 16),
                        sw128_desc(sK + (kk >> 2) * 16384 + (kk & 3) * 32, 16), kk > 0);
  wgmma_commit();
}

// Online softmax of one key tile (keys k0..k0+127) for this thread's two rows: masks S, updates the running max m
// and sum l (l scaled by alpha, the factor the output must take too), and writes P = 2^(S sl2 - max) to pr (fp32;
// acc_to_a packs it as the A operand of P V).
struct FwdRows {
  int r[2], ds[2];  // the rows (queries) and the first key each sees (INT_MAX: a row past T)
};
template <bool kMask>
__device__ __forceinline__ void fwd_softmax(const float (&s)[64], const FwdRows& rows, int k0, int tq, float sl2,
                                            float (&m)[2], float (&l)[2], float (&alpha)[2], float (&pr)[64]) {
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = k0 + 8 * j + 2 * tq + (e & 1), i = e >> 1;
      pr[4 * j + e] = kMask && (key < rows.ds[i] || key > rows.r[i]) ? -INFINITY : s[4 * j + e];
    }
  float base_[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < 16; ++j) mx = fmaxf(mx, fmaxf(pr[4 * j + 2 * i], pr[4 * j + 2 * i + 1]));
    const float mn = fmaxf(m[i], quad_max(mx) * sl2);
    // A row with no visible key yet keeps max -inf: subtract 0 instead, so that 2^(-inf) = 0, not NaN.
    base_[i] = mn == -INFINITY ? 0.0f : mn;
    alpha[i] = exp2_approx(m[i] - base_[i]);
    m[i] = mn;
    l[i] *= alpha[i];
  }
#pragma unroll
  for (int j = 0; j < 16; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) pr[4 * j + e] = exp2_approx(fmaf(pr[4 * j + e], sl2, -base_[e >> 1]));
    l[0] += pr[4 * j] + pr[4 * j + 1], l[1] += pr[4 * j + 2] + pr[4 * j + 3];
  }
}

#endif  // TUNE_FA_WGMMA_BODY

// Warp-specialised (the FlashAttention-3 structure): warpgroup 0 is the producer, one thread of which brings Q
// once and K and V of each key tile (from the diagonal back) into kFwdStages stages by TMA, each stage guarded by
// full barriers (the copies' bytes landed) and an empty barrier (both consumers are done with it). Warpgroups 1
// and 2 consume, each its own 64 query rows: S = Q K^T, softmax, O += P V, with no CTA-wide barrier between them.
// They take turns issuing S (named barriers 1 and 2 pass the turn), so that the tensor cores work for one while
// the other runs its softmax ("ping-pong"). The producer gives most of its registers to the consumers.
__global__ void __launch_bounds__(kFwdThreads, 1)
    flash_fwd_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                           const __grid_constant__ CUtensorMap tm_v, const WgmmaFwdParams p) {
#if TUNE_FA_WGMMA_BODY
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw), base = (raw + 1023) & ~1023u;
  // Q, then per stage K and V (32 KB each), then the barriers: q_full, k_full[S], v_full[S], empty[S].
  const uint32_t sQ = base, sK0 = base + 32768, sV0 = sK0 + kFwdStages * 32768;
  const uint32_t bar = sV0 + kFwdStages * 32768, q_full = bar;
  auto k_full = [&](int st) { return bar + 8 + 8 * st; };
  auto v_full = [&](int st) { return bar + 8 + 8 * (kFwdStages + st); };
  auto empty = [&](int st) { return bar + 8 + 8 * (2 * kFwdStages + st); };
  const int tid = threadIdx.x, lane = tid & 31, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), wg = warp >> 2,
            wq = warp & 3;
  const int T = p.T, h = blockIdx.x, kh = h / p.group;
  const auto [q0, kb_first, kb_last, ds_last] = fwd_tile<kFwdBR, kFwdBC>(p.doc_start, T);
  if (tid == 0) {
    mbar_init(q_full, 1);
    for (int st = 0; st < kFwdStages; ++st) {
      mbar_init(k_full(st), 1);
      mbar_init(v_full(st), 1);
      mbar_init(empty(st), 2 * 128);
    }
    fence_mbar_init();
  }
  __syncthreads();

  if (wg == 0) {  // producer
    setmaxnreg_dec<24>();
    if (tid != 0) return;
    const int qc = h * kD, kc = kh * kD;
    mbar_expect_tx(q_full, 32768);
    tma_load_tile(sQ, &tm_q, qc, q0, kFwdBR, q_full);
    for (int kb = kb_last, it = 0; kb >= kb_first; --kb, ++it) {
      const int st = it % kFwdStages, k0 = kb * kFwdBC;
      if (it >= kFwdStages) mbar_wait(empty(st), ((it / kFwdStages) - 1) & 1);
      const uint32_t sK = sK0 + st * 32768, sV = sV0 + st * 32768;
      mbar_expect_tx(k_full(st), 32768);
      tma_load_tile(sK, &tm_k, kc, k0, kFwdBC, k_full(st));
      mbar_expect_tx(v_full(st), 32768);
      tma_load_tile(sV, &tm_v, kc, k0, kFwdBC, v_full(st));
    }
    return;
  }
  setmaxnreg_inc<240>();
  const int cw = wg - 1;  // consumer 0 or 1
  const int g = lane >> 2, tq = lane & 3;
  const uint32_t sQw = sQ + cw * 8192;  // this warpgroup's 64 rows of each column block
  FwdRows rows;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    rows.r[i] = q0 + cw * 64 + wq * 16 + g + 8 * i;
    rows.ds[i] = rows.r[i] < T ? (p.doc_start ? p.doc_start[rows.r[i]] : 0) : INT_MAX;
  }
  const float sl2 = p.scale_log2;
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  reg_fence(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, alpha[2];
  // Consumer 0 has the first turn to issue S; a turn passes on once S is issued.
  const int my_turn = 1 + cw, their_turn = 2 - cw;
  if (cw == 1) named_barrier_arrive(1, 256);
  mbar_wait(q_full, 0);

  for (int kb = kb_last, it = 0; kb >= kb_first; --kb, ++it) {
    const int st = it % kFwdStages, k0 = kb * kFwdBC;
    const uint32_t ph = (it / kFwdStages) & 1;
    mbar_wait(k_full(st), ph);
    float s[64];
    named_barrier_sync(my_turn, 256);
    fwd_issue_s(s, sQw, sK0 + st * 32768);
    if (cw == 0 || kb > kb_first) named_barrier_arrive(their_turn, 256);
    wgmma_wait<0>();
    reg_fence(s);
    float pr[64];
    // Masks unless every key of the tile precedes every row and lies in every row's document.
    // (Two instances: with a runtime flag ptxas made each element's mask a branch, 24x the old kernel's branches.)
    if (!(k0 + kFwdBC - 1 <= q0 && ds_last <= k0))
      fwd_softmax<true>(s, rows, k0, tq, sl2, m, l, alpha, pr);
    else
      fwd_softmax<false>(s, rows, k0, tq, sl2, m, l, alpha, pr);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0];
      o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
    }
    uint32_t pf[8][4];
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) acc_to_a(pr, kk, pf[kk]);
    mbar_wait(v_full(st), ph);
    // O += P V: 8 steps of 16 keys; V read along its rows (MN-major B).
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) wgmma_rs_n128<1>(o, pf[kk], sw128_desc(sV0 + st * 32768 + kk * 2048, 16384), 1);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(o);
    mbar_arrive(empty(st));  // this warpgroup no longer reads the stage's K and V
  }

  // O / l as bf16 (each quad of lanes writes 16 contiguous bytes of a row) and lse per row.
  bf16* go = p.o + int64_t(h) * kD + 2 * tq;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float li = quad_sum(l[i]);
    const float inv = li > 0.0f ? 1.0f / li : 0.0f;
    if (rows.r[i] >= T) continue;
    if (tq == 0) p.lse[int64_t(h) * T + rows.r[i]] = (m[i] + log2f(li)) * kLn2;
    bf16* row = go + int64_t(rows.r[i]) * p.o_stride;
#pragma unroll
    for (int j = 0; j < 16; ++j)
      *reinterpret_cast<uint32_t*>(row + 8 * j) = pack_bf16(o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
  }
#endif
}

// ---- backward -----------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads, 1)
    flash_bwd_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                           const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_do,
                           const __grid_constant__ CUtensorMap tm_dq, const WgmmaBwdParams p) {
#if TUNE_FA_WGMMA_BODY
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw), base = (raw + 1023) & ~1023u;
  const uint32_t sK = base, sV = base + 32768, sQ0 = base + 65536, sdO0 = base + 98304, sdS0 = base + 131072,
                 sdQ0 = base + 163840;
  float* s_lse = reinterpret_cast<float*>(smem_raw + (base - raw) + 196608);  // (2, BR)
  float* s_dvec = s_lse + 2 * kBwdBR;                                         // (2, BR)
  int* s_ds = reinterpret_cast<int*>(s_dvec + 2 * kBwdBR);                    // (2, BR)
  // Barriers: K and V landed; a stage's Q and dO landed (two).
  const uint32_t kv_full = smem_u32(s_ds + 2 * kBwdBR);
  auto full = [&](int buf) { return kv_full + 8 + 8 * buf; };
  // The warpgroup and warp indices through a shuffle: the compiler then knows them warp-uniform (shared-memory
  // descriptors built from them can live in uniform registers).
  const int tid = threadIdx.x, lane = tid & 31, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), wg = warp >> 2,
            wq = warp & 3;
  const int g = lane >> 2, tq = lane & 3;
  // kv heads vary fastest in launch order: the first key tiles, with the most queries, start first.
  const int T = p.T, k0 = blockIdx.y * kBwdBC, kh = blockIdx.x;
  const int k_last = min(k0 + kBwdBC, T) - 1;

  if (tid == 0) {
    mbar_init(kv_full, 1);
    mbar_init(full(0), 1);
    mbar_init(full(1), 1);
    fence_mbar_init();
  }
  __syncthreads();
  // K and V once, Q and dO of each step by TMA (one thread); rows past T read as zeros.
  if (tid == 0) {
    mbar_expect_tx(kv_full, 65536);
    tma_load_tile(sK, &tm_k, kh * kD, k0, kBwdBC, kv_full);
    tma_load_tile(sV, &tm_v, kh * kD, k0, kBwdBC, kv_full);
  }
  // Queries that see a key of the tile: [k0, q_end).
  const int q_end = queries_end(p.doc_start, k_last, T);
  const int qt_first = k0 / kBwdBR, nq = (q_end - 1) / kBwdBR - qt_first + 1, n_steps = p.group * nq;

  // Step i: query head kh * group + i / nq, query tile qt_first + i % nq, into stage `buf` (Q and dO by TMA, the
  // rows' lse, D and document start by cp.async).
  auto stage = [&](int i, int buf) {
    const int h = kh * p.group + i / nq, q0 = (qt_first + i % nq) * kBwdBR;
    if (tid == 0) {
      mbar_expect_tx(full(buf), 32768);
      tma_load_tile(sQ0 + buf * 16384, &tm_q, h * kD, q0, kBwdBR, full(buf));
      tma_load_tile(sdO0 + buf * 16384, &tm_do, h * kD, q0, kBwdBR, full(buf));
    }
    if (tid < kBwdBR) {
      const int at = buf * kBwdBR + tid;
      stage_query_row(s_lse + at, s_dvec + at, s_ds + at, p.lse, p.dvec, p.doc_start, h, q0 + tid, T);
    }
    cp_async_commit();
  };
  stage(0, 0);

  float dka[64], dva[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) dka[i] = dva[i] = 0.0f;
  reg_fence(dka);  // defined here, not inside a wgmma's flight (that would serialize the wgmma pipeline)
  reg_fence(dva);
  const int key0 = k0 + wg * 64 + wq * 16 + g, key1 = key0 + 8;  // this thread's rows of S^T
  // This thread's rows of dS^T in sdS ([128 keys][64 queries], swizzled).
  const int srow0 = wg * 64 + wq * 16 + g, srow1 = srow0 + 8;
  const float sl2 = p.scale_log2;

  // dQ of step j = dS K, this warpgroup's 64 dims: A = dS read down the columns of dS^T (MN-major), B = K's column
  // block wg read along its rows (MN-major); 8 steps of 16 keys. Issued late in step j + 1 (sdS is double-buffered),
  // so that no barrier separates dS^T from it and its reduction overlaps that step's dK product.
  auto issue_dq = [&](int j, float(&dqa)[32]) {
    const uint32_t sds = sdS0 + (j & 1) * 16384;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk)
      wgmma_ss_n64<1, 1>(dqa, sw128_desc(sds + kk * 2048, 8192), sw128_desc(sK + wg * 16384 + kk * 2048, 8192),
                         kk > 0);
    wgmma_commit();
  };
  // The warpgroup's dQ goes through its shared-memory tile: two boxes of 64 queries x 32 dims (fp32, 128-byte
  // rows, swizzled as TMA reads them), which one thread adds into dq_acc by TMA (the reduction happens in L2, a
  // line at a time; per-thread atomics there cost the kernel a quarter of its time). Named barrier 1 + wg.
  const uint32_t sdQ = sdQ0 + wg * 16384;
  const bool dq_issuer = (tid & 127) == 0;
  auto add_dq = [&](int j, const float(&dqa)[32]) {
    if (dq_issuer) bulk_wait_read();  // the previous step's reduction has read the tile
    named_barrier_sync(1 + wg, 128);
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const int r0 = wq * 16 + g, chunk = 2 * (jj & 3) + (tq >> 1);
      const uint32_t box = sdQ + (jj >> 2) * 8192 + (tq & 1) * 8;
      const uint32_t a0 = box + r0 * 128 + ((chunk ^ (r0 & 7)) << 4), a1 = a0 + 8 * 128;  // row r0 + 8: same swizzle
      asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(a0), "f"(dqa[4 * jj]), "f"(dqa[4 * jj + 1]) : "memory");
      asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(a1), "f"(dqa[4 * jj + 2]), "f"(dqa[4 * jj + 3])
                   : "memory");
    }
    fence_proxy_async();
    named_barrier_sync(1 + wg, 128);
    if (dq_issuer) {
      const int h = kh * p.group + j / nq, q0 = (qt_first + j % nq) * kBwdBR, c = h * kD + wg * 64;
      tma_reduce_add_2d(&tm_dq, c, q0, sdQ);
      tma_reduce_add_2d(&tm_dq, c + 32, q0, sdQ + 8192);
      bulk_commit();
    }
  };

  // One step; the first has no dQ of a previous step to run (a separate instance, so that ptxas sees one wgmma
  // pipeline shape per instance and does not serialize it).
  auto step = [&]<bool kFirst>(int i) {
    const int buf = i & 1, q0 = (qt_first + i % nq) * kBwdBR;
    if constexpr (kFirst) mbar_wait(kv_full, 0);
    mbar_wait(full(buf), (i >> 1) & 1);
    cp_async_wait_all();
    __syncthreads();  // step i has landed, sdS of step i - 1 is complete; both warpgroups are done with step i - 1
    const uint32_t sQ = sQ0 + buf * 16384, sdO = sdO0 + buf * 16384, sds = sdS0 + buf * 16384;
    const float* lse = s_lse + buf * kBwdBR;
    const float* dvec = s_dvec + buf * kBwdBR;
    const int* ds = s_ds + buf * kBwdBR;

    // S^T = K Q^T and dP^T = V dO^T: this warpgroup's 64 keys x 64 queries, 8 steps of 16 dims each.
    float st[32], dpt[32];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk)
      wgmma_ss_n64<0, 0>(st, sw128_desc(sK + (kk >> 2) * 16384 + wg * 8192 + (kk & 3) * 32, 16),
                         sw128_desc(sQ + (kk >> 2) * 8192 + (kk & 3) * 32, 16), kk > 0);
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk)
      wgmma_ss_n64<0, 0>(dpt, sw128_desc(sV + (kk >> 2) * 16384 + wg * 8192 + (kk & 3) * 32, 16),
                         sw128_desc(sdO + (kk >> 2) * 8192 + (kk & 3) * 32, 16), kk > 0);
    wgmma_commit();
    if (i + 1 < n_steps) stage(i + 1, buf ^ 1);  // while the tensor cores work
    wgmma_wait<1>();
    reg_fence(st);

    // P^T = 2^(S^T sl2 - lse[query] log2 e), 0 where masked (past T, before the query's document, after it).
    // (Two instances of the loop: with a runtime flag ptxas may make each element's mask a branch, as it did in the
    // forward.)
    auto probs = [&]<bool kMask>() {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int rq = 8 * j + 2 * tq;  // this thread's two query columns rq, rq + 1 (8-byte aligned pairs)
        const float2 lse2 = *reinterpret_cast<const float2*>(lse + rq);
        const float nl[2] = {-lse2.x * kLog2e, -lse2.y * kLog2e};
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float p0 = exp2_approx(fmaf(st[4 * j + e], sl2, nl[e]));
          float p1 = exp2_approx(fmaf(st[4 * j + 2 + e], sl2, nl[e]));
          if constexpr (kMask) {
            const int t = q0 + rq + e, dst = ds[rq + e];
            const bool tv = t < T;
            p0 = tv && dst <= key0 && key0 <= t ? p0 : 0.0f;
            p1 = tv && dst <= key1 && key1 <= t ? p1 : 0.0f;
          }
          st[4 * j + e] = p0, st[4 * j + 2 + e] = p1;
        }
      }
    };
    if (!(k0 + kBwdBC - 1 <= q0 && q0 + kBwdBR <= T && ds[kBwdBR - 1] <= k0))
      probs.template operator()<true>();
    else
      probs.template operator()<false>();
    uint32_t pa[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) acc_to_a(st, kk, pa[kk]);
    // dV += P^T dO: 4 steps of 16 queries; dO read along its rows (MN-major B, 128 dims in two column blocks).
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma_rs_n128<1>(dva, pa[kk], sw128_desc(sdO + kk * 2048, 8192), 1);
    wgmma_commit();
    wgmma_wait<1>();  // dP^T is done (dV may still run)
    reg_fence(dpt);

    // dS^T = P^T (dP^T - D[query]), without `scale` (applied to dK and dQ at the end); to sdS for dQ.
    uint32_t sa[4][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 d2 = *reinterpret_cast<const float2*>(dvec + 8 * j + 2 * tq);
      const float dd[2] = {d2.x, d2.y};
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        st[4 * j + e] *= dpt[4 * j + e] - dd[e];
        st[4 * j + 2 + e] *= dpt[4 * j + 2 + e] - dd[e];
      }
    }
    const uint32_t sds0 = sds + srow0 * 128, sds1 = sds + srow1 * 128;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      acc_to_a(st, kk, sa[kk]);
      // Columns (queries) 16 kk + 2 tq (chunk 2 kk) and 16 kk + 8 + 2 tq (chunk 2 kk + 1) of rows srow0 / srow1.
      const uint32_t c0 = (2 * kk) ^ (srow0 & 7), c1 = (2 * kk + 1) ^ (srow0 & 7);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds0 + c0 * 16 + tq * 4), "r"(sa[kk][0]) : "memory");
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds1 + c0 * 16 + tq * 4), "r"(sa[kk][1]) : "memory");
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds0 + c1 * 16 + tq * 4), "r"(sa[kk][2]) : "memory");
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds1 + c1 * 16 + tq * 4), "r"(sa[kk][3]) : "memory");
    }
    fence_proxy_async();  // for the dQ products of the next step
    // dQ of the previous step (its reduction runs beside dK), then dK += dS^T Q: Q read along its rows (MN-major B).
    float dqa[32];
    if constexpr (!kFirst) issue_dq(i - 1, dqa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma_rs_n128<1>(dka, sa[kk], sw128_desc(sQ + kk * 2048, 8192), 1);
    wgmma_commit();
    if constexpr (!kFirst) {
      wgmma_wait<1>();  // dV and dQ of step i - 1
      reg_fence(dqa);
      add_dq(i - 1, dqa);
    }
    wgmma_wait<0>();  // dK: its stage and A registers are free again
    reg_fence(dka);
    reg_fence(dva);
  };
  step.template operator()<true>(0);
  for (int i = 1; i < n_steps; ++i) step.template operator()<false>(i);
  __syncthreads();  // sdS of the last step is complete
  {
    float dqa[32];
    issue_dq(n_steps - 1, dqa);
    wgmma_wait<0>();
    reg_fence(dqa);
    add_dq(n_steps - 1, dqa);
  }
  if (dq_issuer) bulk_wait_all();

  // dK (times scale) and dV, each quad of lanes writing 16 contiguous bytes of a row.
  const int keys[2] = {key0, key1};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (keys[i] >= T) continue;
    const int64_t col = int64_t(kh) * kD + 2 * tq;
    bf16* dkr = p.dk + int64_t(keys[i]) * p.k_stride + col;
    bf16* dvr = p.dv + int64_t(keys[i]) * p.v_stride + col;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      *reinterpret_cast<uint32_t*>(dkr + 8 * j) =
          pack_bf16(dka[4 * j + 2 * i] * p.scale, dka[4 * j + 2 * i + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(dvr + 8 * j) = pack_bf16(dva[4 * j + 2 * i], dva[4 * j + 2 * i + 1]);
    }
  }
#endif
}

template <class K>
void allow_smem(K* kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace

bool flash_wgmma_supported(int64_t d) {
  if (d != kD) return false;
  static const bool hopper = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
    return major == 9 && minor == 0;  // the sm_90a image runs on compute capability 9.0 only
  }();
  return hopper;
}

namespace {

// The driver's cuTensorMapEncodeTiled, through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    TUNE_CHECK(f && q == cudaDriverEntryPointSuccess) << "flash_attention: the driver has no cuTensorMapEncodeTiled";
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A 2-D bf16 map over `rows` rows of `cols` columns (row stride `stride` elements), read in boxes of 64 columns x
// box_rows rows into the 128-byte-swizzled layout; rows past the end read as zeros.
CUtensorMap tile_map(const bf16* base, int64_t cols, int64_t rows, int64_t stride, int box_rows) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(stride) * 2};
  const cuuint32_t box[2] = {64, cuuint32_t(box_rows)};
  const cuuint32_t elem[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims,
                                          strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TUNE_CHECK(r == CUDA_SUCCESS) << "flash_attention: cuTensorMapEncodeTiled failed (" << int(r) << ")";
  return m;
}

// The fp32 dQ accumulators (rows of `cols`), added to in boxes of 32 columns x kBwdBR rows from the 128-byte-swizzled
// tiles of the backward; rows past the end are left alone.
CUtensorMap acc_map(float* base, int64_t cols, int64_t rows) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(cols) * 4};
  const cuuint32_t box[2] = {32, cuuint32_t(kBwdBR)};
  const cuuint32_t elem[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, base, dims, strides, box, elem,
                                          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TUNE_CHECK(r == CUDA_SUCCESS) << "flash_attention: cuTensorMapEncodeTiled failed (" << int(r) << ")";
  return m;
}

}  // namespace

void flash_wgmma_fwd(const WgmmaFwdParams& p, cudaStream_t stream) {
  static const bool once = (allow_smem(flash_fwd_wgmma_kernel, kFwdSmem), true);
  (void)once;
  const dim3 grid(unsigned(p.nH), unsigned((p.T + kFwdBR - 1) / kFwdBR));
  TUNE_CHECK(grid.y <= 65535) << "flash_attention_fwd: " << p.T << " tokens is too many";
  const int64_t nKV = p.nH / p.group;
  const CUtensorMap tq = tile_map(p.q, p.nH * kD, p.T, p.q_stride, kFwdBR);
  const CUtensorMap tk = tile_map(p.k, nKV * kD, p.T, p.k_stride, kFwdBC);
  const CUtensorMap tv = tile_map(p.v, nKV * kD, p.T, p.v_stride, kFwdBC);
  flash_fwd_wgmma_kernel<<<grid, kFwdThreads, kFwdSmem, stream>>>(tq, tk, tv, p);
  CUDA_CHECK(cudaGetLastError());
}

void flash_wgmma_bwd(const WgmmaBwdParams& p, cudaStream_t stream) {
  static const bool once = (allow_smem(flash_bwd_wgmma_kernel, kBwdSmem), true);
  (void)once;
  const dim3 grid(unsigned(p.nKV), unsigned((p.T + kBwdBC - 1) / kBwdBC));
  TUNE_CHECK(grid.y <= 65535) << "flash_attention_bwd: " << p.T << " tokens is too many";
  const CUtensorMap tq = tile_map(p.q, p.nH * kD, p.T, p.q_stride, kBwdBR);
  const CUtensorMap tk = tile_map(p.k, p.nKV * kD, p.T, p.k_stride, kBwdBC);
  const CUtensorMap tv = tile_map(p.v, p.nKV * kD, p.T, p.v_stride, kBwdBC);
  const CUtensorMap tdo = tile_map(p.d_o, p.nH * kD, p.T, p.o_stride, kBwdBR);
  const CUtensorMap tdq = acc_map(p.dq_acc, p.nH * kD, p.T);
  flash_bwd_wgmma_kernel<<<grid, kThreads, kBwdSmem, stream>>>(tq, tk, tv, tdo, tdq, p);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace tune::cuda
