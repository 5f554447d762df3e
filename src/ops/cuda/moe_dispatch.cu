// moe_dispatch on CUDA. The sort is a counting sort over chunks of slots: (1) a block per chunk counts its
// experts in shared memory into a (chunks, E) table, (2) a block per 32 experts turns each column into its
// exclusive prefix over the chunks, (3) one block scans the expert totals into offsets, (4) a warp per chunk
// places its slots 32 at a time, ranking equal experts within the 32 by __match_any_sync. Every row follows
// from the routing alone (no atomic decides a position). The row ops give each token (gather: each sorted
// row) a block whose threads stride over H in 16-byte vectors of 8 bf16 where H and the pointers allow, else
// by one.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "ops/cuda/kernel_util.cuh"
#include "ops/moe_dispatch.h"
#include "ops/moe_route.h"

namespace tune::cuda {

namespace {

constexpr int kCountThreads = 256, kScanThreads = 1024, kRowThreads = 256, kGatherUnroll = 4;
// The count table holds about this many entries at most (16 MiB): chunks grow with T k E past it.
constexpr int64_t kMaxCounts = int64_t(1) << 22, kMinChunk = 256;

// Slots per chunk: a multiple of 32 (whole warp tiles), at least kMinChunk.
int64_t sort_chunk(int64_t n, int64_t E) {
  const int64_t c = std::max(kMinChunk, (n * E + kMaxCounts - 1) / kMaxCounts);
  return (c + 31) / 32 * 32;
}

int64_t sort_chunks(int64_t n, int64_t E) {
  const int64_t c = sort_chunk(n, E);
  return (n + c - 1) / c;
}

// counts[b, e] = slots of chunk b routed to e. The shared-memory atomics only count, so order does not
// matter.
__global__ void __launch_bounds__(kCountThreads)
    sort_count_kernel(const int32_t* experts, int64_t n, int64_t chunk, int E, int32_t* counts) {
  __shared__ int32_t c[kMoeMaxExperts];
  for (int e = threadIdx.x; e < E; e += blockDim.x) c[e] = 0;
  __syncthreads();
  const int64_t b = blockIdx.x, end = (b + 1) * chunk < n ? (b + 1) * chunk : n;
  for (int64_t i = b * chunk + threadIdx.x; i < end; i += blockDim.x) atomicAdd(&c[experts[i]], 1);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[b * E + e] = c[e];
}

// Per expert e (a column of counts): counts[b, e] -> sum of counts[b', e] for b' < b, and total[e] = the
// column sum. Lane = expert (coalesced rows), warp w = the w-th slab of consecutive chunks; the slab sums are
// scanned in shared memory between the two passes.
__global__ void __launch_bounds__(1024)
    sort_scan_chunks_kernel(int32_t* counts, int64_t chunks, int E, int32_t* total) {
  __shared__ int32_t slab[32][33];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, e = blockIdx.x * 32 + lane;
  const int64_t per = (chunks + 31) / 32, b0 = w * per, b1 = b0 + per < chunks ? b0 + per : chunks;
  int32_t s = 0;
  if (e < E)
    for (int64_t b = b0; b < b1; ++b) s += counts[b * E + e];
  slab[w][lane] = s;
  __syncthreads();
  if (w == 0) {
    int32_t run = 0;
    for (int q = 0; q < 32; ++q) {
      const int32_t v = slab[q][lane];
      slab[q][lane] = run;
      run += v;
    }
    if (e < E) total[e] = run;
  }
  __syncthreads();
  if (e >= E) return;
  int32_t run = slab[w][lane];
  for (int64_t b = b0; b < b1; ++b) {
    const int32_t v = counts[b * E + e];
    counts[b * E + e] = run;
    run += v;
  }
}

// offsets (E + 1): offsets[e] holds expert e's total on entry, its first row on exit; offsets[E] = n. Thread
// t owns experts 2t and 2t + 1 (E <= 2 kScanThreads).
__global__ void __launch_bounds__(kScanThreads) sort_scan_experts_kernel(int32_t* offsets, int E, int32_t n) {
  __shared__ int32_t warp_incl[kScanThreads / 32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, e = 2 * threadIdx.x;
  const int32_t a = e < E ? offsets[e] : 0, b = e + 1 < E ? offsets[e + 1] : 0;
  int32_t incl = a + b;
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) warp_incl[w] = incl;
  __syncthreads();
  if (w == 0) {
    int32_t v = warp_incl[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t u = __shfl_up_sync(0xffffffffu, v, o);
      if (lane >= o) v += u;
    }
    warp_incl[lane] = v;
  }
  __syncthreads();
  const int32_t first = incl - (a + b) + (w > 0 ? warp_incl[w - 1] : 0);
  if (e < E) offsets[e] = first;
  if (e + 1 < E) offsets[e + 1] = first + a;
  if (threadIdx.x == 0) offsets[E] = n;
}

// One warp per chunk: next[e] = the row for chunk b's next slot of expert e. In each tile of 32 slots a
// lane's row is next[e] plus the number of lower lanes with the same expert; the lowest such lane then
// advances next[e].
__global__ void __launch_bounds__(32)
    sort_place_kernel(const int32_t* experts, int64_t n, int64_t chunk, int E, const int32_t* counts,
                      const int32_t* offsets, int32_t* order, int32_t* slot_row) {
  __shared__ int32_t next[kMoeMaxExperts];
  const int lane = threadIdx.x;
  const int64_t b = blockIdx.x, end = (b + 1) * chunk < n ? (b + 1) * chunk : n;
  for (int e = lane; e < E; e += 32) next[e] = offsets[e] + counts[b * E + e];
  __syncwarp();
  const unsigned lower = (1u << lane) - 1;
  for (int64_t i0 = b * chunk; i0 < end; i0 += 32) {
    const int64_t i = i0 + lane;
    const int e = i < end ? experts[i] : -1;  // -1: past the end, matches no expert
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(peers & lower);
    if (e >= 0) {
      const int32_t row = next[e] + rank;
      order[row] = int32_t(i);
      slot_row[i] = row;
    }
    __syncwarp();
    if (e >= 0 && rank == 0) next[e] += __popc(peers);
    __syncwarp();
  }
}

// W (8 or 1) consecutive bf16 values as floats.
template <int W>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&v)[W]) {
  if constexpr (W == 8)
    unpack8(*reinterpret_cast<const uint4*>(p), v);
  else
    v[0] = to_f32(*p);
}

template <int W>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&v)[W]) {
  if constexpr (W == 8)
    *reinterpret_cast<uint4*>(p) = pack8(v);
  else
    *p = from_f32<bf16>(v[0]);
}

// xs[row] = x[order[row] / k], copied bit for bit. Each thread loads kGatherUnroll vectors before storing
// them, to keep enough bytes in flight.
template <int W>
__global__ void __launch_bounds__(kRowThreads)
    gather_kernel(const bf16* x, int64_t H, int k, const int32_t* order, bf16* xs) {
  using V = std::conditional_t<W == 8, uint4, uint16_t>;
  const int64_t row = blockIdx.x, nv = H / W, step = blockDim.x;
  const V* src = reinterpret_cast<const V*>(x + int64_t(order[row] / k) * H);
  V* dst = reinterpret_cast<V*>(xs + row * H);
  for (int64_t v0 = threadIdx.x; v0 < nv; v0 += step * kGatherUnroll) {
    V r[kGatherUnroll];
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u)
      if (v0 + u * step < nv) r[u] = src[v0 + u * step];
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u)
      if (v0 + u * step < nv) dst[v0 + u * step] = r[u];
  }
}

// out[t] = (accumulate ? out[t] : 0) + sum_j w_j ys[slot_row[t k + j]] in fp32, j in order; w_j = 1 when
// weights is null (the scatter-add).
template <int W>
__global__ void __launch_bounds__(kRowThreads)
    combine_kernel(const bf16* ys, const int32_t* slot_row, const float* weights, int64_t H, int k, bf16* out,
                   bool accumulate) {
  const int64_t t = blockIdx.x;
  const int32_t* rows = slot_row + t * k;
  bf16* o = out + t * H;
  for (int64_t c = int64_t(threadIdx.x) * W; c < H; c += int64_t(blockDim.x) * W) {
    float s[W] = {}, y[W];
    for (int j = 0; j < k; ++j) {
      const float wj = weights ? weights[t * k + j] : 1.0f;
      load_bf16<W>(ys + int64_t(rows[j]) * H + c, y);
#pragma unroll
      for (int q = 0; q < W; ++q) s[q] += wj * y[q];
    }
    if (accumulate) {
      load_bf16<W>(o + c, y);
#pragma unroll
      for (int q = 0; q < W; ++q) s[q] = y[q] + s[q];
    }
    store_bf16<W>(o + c, s);
  }
}

// For each slot i = t k + j: dys[slot_row[i]] = w_i dout[t], dweights[i] = dout[t] . ys[slot_row[i]] (block
// sum: a fixed tree for a fixed H, so deterministic).
template <int W>
__global__ void __launch_bounds__(kRowThreads)
    combine_bwd_kernel(const bf16* dout, const bf16* ys, const int32_t* slot_row, const float* weights,
                       int64_t H, int k, bf16* dys, float* dweights) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const bf16* d = dout + t * H;
  for (int j = 0; j < k; ++j) {
    const int64_t i = t * k + j, row = slot_row[i];
    const float w = weights[i];
    float dot = 0.0f;
    for (int64_t c = int64_t(threadIdx.x) * W; c < H; c += int64_t(blockDim.x) * W) {
      float g[W], y[W];
      load_bf16<W>(d + c, g);
      load_bf16<W>(ys + row * H + c, y);
#pragma unroll
      for (int q = 0; q < W; ++q) {
        dot += g[q] * y[q];
        g[q] *= w;
      }
      store_bf16<W>(dys + row * H + c, g);
    }
    dot = block_sum(dot, scratch);
    if (threadIdx.x == 0) dweights[i] = dot;
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Calls f(std::integral_constant<int, W>) with W = 8 when rows of H bf16 at these pointers take 16-byte
// accesses, else W = 1.
template <class F>
void with_width(int64_t H, std::initializer_list<const void*> ptrs, F&& f) {
  if (H % 8 == 0 && std::all_of(ptrs.begin(), ptrs.end(), aligned16))
    f(std::integral_constant<int, 8>{});
  else
    f(std::integral_constant<int, 1>{});
}

}  // namespace

size_t moe_sort_workspace_bytes(int64_t T, int64_t k, int64_t E) {
  return size_t(sort_chunks(T * k, E) * E) * sizeof(int32_t);
}

void moe_sort(const int32_t* experts, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* order,
              int32_t* slot_row, void* workspace, void* stream) {
  const int64_t n = T * k;
  TUNE_CHECK(E >= 1 && E <= kMoeMaxExperts && n < (int64_t(1) << 31))
      << "moe_sort: " << E << " experts, " << n << " slots (at most 2048 experts and 2^31 slots)";
  const auto st = cudaStream_t(stream);
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(offsets, 0, size_t(E + 1) * sizeof(int32_t), st));
    return;
  }
  const int64_t chunk = sort_chunk(n, E), chunks = sort_chunks(n, E);
  int32_t* counts = static_cast<int32_t*>(workspace);
  sort_count_kernel<<<unsigned(chunks), kCountThreads, 0, st>>>(experts, n, chunk, int(E), counts);
  TUNE_CUDA_LAUNCHED();
  sort_scan_chunks_kernel<<<unsigned((E + 31) / 32), 1024, 0, st>>>(counts, chunks, int(E), offsets);
  TUNE_CUDA_LAUNCHED();
  sort_scan_experts_kernel<<<1, kScanThreads, 0, st>>>(offsets, int(E), int32_t(n));
  TUNE_CUDA_LAUNCHED();
  sort_place_kernel<<<unsigned(chunks), 32, 0, st>>>(experts, n, chunk, int(E), counts, offsets, order,
                                                     slot_row);
  TUNE_CUDA_LAUNCHED();
}

void moe_gather(const void* x, int64_t T, int64_t H, int64_t k, const int32_t* order, int64_t rows, void* xs,
                void* stream) {
  TUNE_CHECK(rows <= T * k) << "moe_gather: " << rows << " rows from " << T << " tokens of " << k << " slots";
  if (rows == 0) return;
  with_width(H, {x, xs}, [&](auto w) {
    constexpr int W = decltype(w)::value;
    const int threads = row_threads((H / W + kGatherUnroll - 1) / kGatherUnroll, kRowThreads);
    gather_kernel<W><<<unsigned(rows), threads, 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(x), H, int(k), order, static_cast<bf16*>(xs));
  });
  TUNE_CUDA_LAUNCHED();
}

void moe_combine_fwd(const void* ys, const int32_t* slot_row, const float* weights, int64_t T, int64_t k,
                     int64_t H, void* out, bool accumulate, void* stream) {
  if (T == 0) return;
  with_width(H, {ys, out}, [&](auto w) {
    constexpr int W = decltype(w)::value;
    combine_kernel<W><<<unsigned(T), row_threads(H / W, kRowThreads), 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(ys), slot_row, weights, H, int(k), static_cast<bf16*>(out), accumulate);
  });
  TUNE_CUDA_LAUNCHED();
}

void moe_combine_bwd(const void* dout, const void* ys, const int32_t* slot_row, const float* weights,
                     int64_t T, int64_t k, int64_t H, void* dys, float* dweights, void* stream) {
  if (T == 0) return;
  with_width(H, {dout, ys, dys}, [&](auto w) {
    constexpr int W = decltype(w)::value;
    combine_bwd_kernel<W><<<unsigned(T), row_threads(H / W, kRowThreads), 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(dout), static_cast<const bf16*>(ys), slot_row, weights, H, int(k),
        static_cast<bf16*>(dys), dweights);
  });
  TUNE_CUDA_LAUNCHED();
}

void moe_scatter_add(const void* dxs, const int32_t* slot_row, int64_t T, int64_t k, int64_t H, void* dx,
                     bool accumulate, void* stream) {
  if (T == 0) return;
  with_width(H, {dxs, dx}, [&](auto w) {
    constexpr int W = decltype(w)::value;
    combine_kernel<W><<<unsigned(T), row_threads(H / W, kRowThreads), 0, cudaStream_t(stream)>>>(
        static_cast<const bf16*>(dxs), slot_row, nullptr, H, int(k), static_cast<bf16*>(dx), accumulate);
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
