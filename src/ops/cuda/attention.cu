// attention on CUDA, the straightforward version: softmax in fp32, no tensor cores.
// Forward: one block per (query row, head); keys in chunks of kChunk with an online softmax (running max and
// sum), scores through shared memory, one warp per key for the dot products and one thread per output dim.
// Backward in three launches, without atomics or scratch memory:
//   1. per (t, h): recompute the row's softmax and o, keep lse = m + log(l) and D = dO . o in the first 8
//   bytes of
//      dq's row (dq is overwritten later anyway, so it serves as scratch: head_dim * sizeof(T) >= 8);
//   2. per (key s, kv head): dv[s] = sum P dO, dk[s] = scale sum dS q over the query rows t >= s of s's
//   document
//      and the heads of the group, one warp per (t, h), reduced across warps at the end;
//   3. per (t, h): dq = scale sum_s dS k, after every thread has read the row's lse and D.
// With P = exp(scale q.k - lse) and dS = P (dO.v - D).
#include "ops/attention.h"
#include "ops/cuda/kernel_util.cuh"

namespace tune::cuda {

namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32, kChunk = 128;
constexpr int kMaxD = int(kAttentionMaxHeadDim);
constexpr int kPerThread = kMaxD / kThreads;  // output dims per thread in the forward
constexpr int kPerLane = kMaxD / 32;          // dims per lane when a warp holds a whole row

// lse and D as raw 16-bit halves, so they survive in a bf16 row as well as an f32 one.
template <class T>
__device__ __forceinline__ void stats_store(T* row, float lse, float D) {
  unsigned short* r = reinterpret_cast<unsigned short*>(row);
  const unsigned a = __float_as_uint(lse), b = __float_as_uint(D);
  r[0] = (unsigned short)(a & 0xffffu);
  r[1] = (unsigned short)(a >> 16);
  r[2] = (unsigned short)(b & 0xffffu);
  r[3] = (unsigned short)(b >> 16);
}

template <class T>
__device__ __forceinline__ void stats_load(const T* row, float& lse, float& D) {
  const unsigned short* r = reinterpret_cast<const unsigned short*>(row);
  lse = __uint_as_float(unsigned(r[0]) | (unsigned(r[1]) << 16));
  D = __uint_as_float(unsigned(r[2]) | (unsigned(r[3]) << 16));
}

// kStats = false: out = o. kStats = true (backward step 1): out = dq, receiving (lse, D) of each row.
template <class T, bool kStats>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kernel(const T* q, const T* k, const T* v, const int32_t* doc_start, float scale,
                         const T* d_o, T* out, int64_t nH, int64_t nKV, int64_t d) {
  __shared__ float sq[kMaxD], sp[kChunk], scratch[32];
  const int64_t t = blockIdx.x, h = blockIdx.y, kh = h / (nH / nKV), row = (t * nH + h) * d;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int j = tid; j < d; j += kThreads) sq[j] = to_f32(q[row + j]);
  const int64_t s0 = doc_start ? doc_start[t] : 0;
  float m = -INFINITY, l = 0.0f, acc[kPerThread] = {};
  __syncthreads();
  for (int64_t c0 = s0; c0 <= t; c0 += kChunk) {
    const int n = int(t + 1 - c0 < kChunk ? t + 1 - c0 : kChunk);
    for (int i = warp; i < n; i += kWarps) {
      const T* kr = k + ((c0 + i) * nKV + kh) * d;
      float dot = 0.0f;
      for (int j = lane; j < d; j += 32) dot += sq[j] * to_f32(kr[j]);
      dot = warp_sum(dot);
      if (lane == 0) sp[i] = dot * scale;
    }
    __syncthreads();
    float cm = -INFINITY;
    for (int i = tid; i < n; i += kThreads) cm = fmaxf(cm, sp[i]);
    const float mn = fmaxf(m, block_max(cm, scratch));
    const float alpha = expf(m - mn);  // 0 on the first chunk
    float cs = 0.0f;
    for (int i = tid; i < n; i += kThreads) {  // the same i this thread read above: no cross-thread hazard
      const float p = expf(sp[i] - mn);
      sp[i] = p;
      cs += p;
    }
    l = l * alpha + block_sum(cs, scratch);  // its barriers publish sp
    m = mn;
#pragma unroll
    for (int a = 0; a < kPerThread; ++a) {
      const int j = tid + a * kThreads;
      if (j < d) {
        const T* vc = v + (c0 * nKV + kh) * d + j;
        float s = acc[a] * alpha;
        for (int i = 0; i < n; ++i) s += sp[i] * to_f32(vc[int64_t(i) * nKV * d]);
        acc[a] = s;
      }
    }
    __syncthreads();  // sp is rewritten by the next chunk
  }
  const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
  if constexpr (!kStats) {
#pragma unroll
    for (int a = 0; a < kPerThread; ++a) {
      const int j = tid + a * kThreads;
      if (j < d) out[row + j] = from_f32<T>(acc[a] * inv_l);
    }
  } else {
    float dd = 0.0f;
#pragma unroll
    for (int a = 0; a < kPerThread; ++a) {
      const int j = tid + a * kThreads;
      if (j < d) dd += to_f32(d_o[row + j]) * acc[a] * inv_l;
    }
    dd = block_sum(dd, scratch);
    if (tid == 0) stats_store(out + row, m + logf(l), dd);
  }
}

// Loads dims lane, lane+32, ... of a row into registers (0 past d).
template <class T>
__device__ __forceinline__ void load_row(const T* r, int64_t d, float (&x)[kPerLane]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int a = 0; a < kPerLane; ++a) {
    const int j = lane + 32 * a;
    x[a] = j < d ? to_f32(r[j]) : 0.0f;
  }
}

__device__ __forceinline__ float row_dot(const float (&x)[kPerLane], const float (&y)[kPerLane]) {
  float s = 0.0f;
#pragma unroll
  for (int a = 0; a < kPerLane; ++a) s += x[a] * y[a];
  return warp_sum(s);
}

// Sums the warps' partial rows of `red` into out (d elements).
template <class T>
__device__ __forceinline__ void store_warp_sum(float (*red)[kMaxD], T* out, int64_t d) {
  for (int j = threadIdx.x; j < d; j += kThreads) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += red[w][j];
    out[j] = from_f32<T>(s);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_kv_kernel(const T* q, const T* k, const T* v, const int32_t* doc_start, float scale,
                            const T* d_o, const T* stats, T* dk, T* dv, int64_t T_, int64_t nH, int64_t nKV,
                            int64_t d) {
  __shared__ float red_k[kWarps][kMaxD], red_v[kWarps][kMaxD];
  const int64_t s = blockIdx.x, kh = blockIdx.y, group = nH / nKV, kvrow = (s * nKV + kh) * d;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float kr[kPerLane], vr[kPerLane], dka[kPerLane] = {}, dva[kPerLane] = {};
  load_row(k + kvrow, d, kr);
  load_row(v + kvrow, d, vr);
  const int64_t pairs = (T_ - s) * group;
  for (int64_t i = warp; i < pairs; i += kWarps) {
    const int64_t t = s + i / group, h = kh * group + i % group, row = (t * nH + h) * d;
    if (doc_start && doc_start[t] > s) continue;  // s is outside t's document (uniform across the warp)
    float qv[kPerLane], gv[kPerLane];
    load_row(q + row, d, qv);
    load_row(d_o + row, d, gv);
    const float sqk = row_dot(qv, kr), sdv = row_dot(gv, vr);
    float lse, D;
    stats_load(stats + row, lse, D);
    const float p = expf(sqk * scale - lse), ds = p * (sdv - D) * scale;
#pragma unroll
    for (int a = 0; a < kPerLane; ++a) {
      dva[a] += p * gv[a];
      dka[a] += ds * qv[a];
    }
  }
#pragma unroll
  for (int a = 0; a < kPerLane; ++a) {
    red_k[warp][lane + 32 * a] = dka[a];
    red_v[warp][lane + 32 * a] = dva[a];
  }
  __syncthreads();
  store_warp_sum(red_k, dk + kvrow, d);
  store_warp_sum(red_v, dv + kvrow, d);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_q_kernel(const T* q, const T* k, const T* v, const int32_t* doc_start, float scale,
                           const T* d_o, T* dq, int64_t nH, int64_t nKV, int64_t d) {
  __shared__ float red[kWarps][kMaxD];
  const int64_t t = blockIdx.x, h = blockIdx.y, kh = h / (nH / nKV), row = (t * nH + h) * d;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float lse, D;
  stats_load(dq + row, lse, D);
  float qv[kPerLane], gv[kPerLane], dqa[kPerLane] = {};
  load_row(q + row, d, qv);
  load_row(d_o + row, d, gv);
  const int64_t s0 = doc_start ? doc_start[t] : 0;
  for (int64_t s = s0 + warp; s <= t; s += kWarps) {
    const int64_t kvrow = (s * nKV + kh) * d;
    float kr[kPerLane], vr[kPerLane];
    load_row(k + kvrow, d, kr);
    load_row(v + kvrow, d, vr);
    const float sqk = row_dot(qv, kr), sdv = row_dot(gv, vr);
    const float p = expf(sqk * scale - lse), ds = p * (sdv - D) * scale;
#pragma unroll
    for (int a = 0; a < kPerLane; ++a) dqa[a] += ds * kr[a];
  }
#pragma unroll
  for (int a = 0; a < kPerLane; ++a) red[warp][lane + 32 * a] = dqa[a];
  __syncthreads();  // also orders every thread's read of (lse, D) before the row is overwritten
  store_warp_sum(red, dq + row, d);
}

void check_sizes(int64_t T, int64_t nH, int64_t d, size_t elem) {
  TUNE_CHECK(d <= kMaxD && d * int64_t(elem) >= 8) << "attention: head dim " << d << " has no CUDA kernel";
  TUNE_CHECK(T <= 0x7fffffff && nH <= 65535) << "attention: " << T << " rows, " << nH << " heads";
}

}  // namespace

void attention_fwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale,
                   void* o, int64_t T, int64_t nH, int64_t nKV, int64_t d, DType dt) {
  if (T == 0 || nH == 0 || d == 0) return;
  with_float_type(dt, [&](auto tag) {
    using R = decltype(tag);
    check_sizes(T, nH, d, sizeof(R));
    attention_fwd_kernel<R, false><<<dim3(unsigned(T), unsigned(nH)), kThreads>>>(
        static_cast<const R*>(q), static_cast<const R*>(k), static_cast<const R*>(v), doc_start, scale,
        nullptr, static_cast<R*>(o), nH, nKV, d);
  });
  TUNE_CUDA_LAUNCHED();
}

void attention_bwd(const void* q, const void* k, const void* v, const int32_t* doc_start, float scale,
                   const void* d_o, void* dq, void* dk, void* dv, int64_t T, int64_t nH, int64_t nKV,
                   int64_t d, DType dt) {
  if (T == 0 || nH == 0 || d == 0) return;
  with_float_type(dt, [&](auto tag) {
    using R = decltype(tag);
    check_sizes(T, nH, d, sizeof(R));
    const R *q_ = static_cast<const R*>(q), *k_ = static_cast<const R*>(k), *v_ = static_cast<const R*>(v),
            *do_ = static_cast<const R*>(d_o);
    R* dq_ = static_cast<R*>(dq);
    attention_fwd_kernel<R, true>
        <<<dim3(unsigned(T), unsigned(nH)), kThreads>>>(q_, k_, v_, doc_start, scale, do_, dq_, nH, nKV, d);
    TUNE_CUDA_LAUNCHED();
    attention_bwd_kv_kernel<R><<<dim3(unsigned(T), unsigned(nKV)), kThreads>>>(
        q_, k_, v_, doc_start, scale, do_, dq_, static_cast<R*>(dk), static_cast<R*>(dv), T, nH, nKV, d);
    TUNE_CUDA_LAUNCHED();
    attention_bwd_q_kernel<R>
        <<<dim3(unsigned(T), unsigned(nH)), kThreads>>>(q_, k_, v_, doc_start, scale, do_, dq_, nH, nKV, d);
  });
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
