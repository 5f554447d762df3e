// qk_norm_rope on CUDA. Head dims 64, 128 and 256 (with a rotary half that splits into a power-of-two number
// of lanes): a warp per (token, 32 / V heads), each head in registers, V = d / 32 elements per lane moved by
// one vector load, rotated across lanes with one shuffle. Other shapes: a warp per (token, head) staged in
// shared memory, which takes any head dim up to 256 and any rotary split, more slowly. The table, per token
// half cos then half sin so that a lane reads its V of each with vector loads, is made once per micro-batch:
// inv_freq formed on the host in fp32 (as rope.cu), angle = pos * inv_freq in fp32, sincosf at full accuracy
// (positions reach 10^5 and more).
#include <cmath>
#include <type_traits>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/vec_util.cuh"
#include "ops/qk_norm_rope.h"

namespace tune::cuda {

namespace {

constexpr int kMaxD = 256, kWarps = 4;

struct InvFreq {
  float v[kMaxD / 2];
};

__device__ __forceinline__ float wscale(const float* w, int j, bool zc) {
  return w ? (zc ? 1.0f + w[j] : w[j]) : 1.0f;
}

template <bool kBwd>
__global__ void __launch_bounds__(kWarps * 32)
    qk_norm_rope_kernel(QkNormRope p, const bf16* src, int64_t src_stride, const bf16* dy, int64_t dy_stride,
                        bf16* out, int64_t out_stride) {
  __shared__ float sx[kWarps][kMaxD], sg[kWarps][kMaxD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t heads = p.nQ + p.nK;
  const int64_t idx = int64_t(blockIdx.x) * kWarps + warp;
  if (idx >= p.T * heads) return;
  const int64_t t = idx / heads, h = idx % heads;
  const int d = int(p.d), half = int(p.rotary_dim / 2);
  const float* w = h < p.nQ ? p.wq : p.wk;
  const bf16* x = src + t * src_stride + h * d;
  float* xs = sx[warp];
  float* gs = sg[warp];
  float ss = 0.0f;
  for (int j = lane; j < d; j += 32) {
    const float v = to_f32(x[j]);
    xs[j] = v;
    ss += v * v;
  }
  const float r = w ? rsqrtf(warp_sum(ss) / float(d) + p.eps) : 1.0f;
  const float sign = kBwd ? -1.0f : 1.0f;
  // Forward: gs = norm(x), then rotate. Backward: gs = rotate^-1(dy), then the norm's backward.
  if (!kBwd) {
    for (int j = lane; j < d; j += 32) gs[j] = xs[j] * r * wscale(w, j, p.zero_centered);
  } else {
    if (p.dq && h < p.nQ) {
      const float* g = p.dq + (t * p.nQ + h) * d;
      for (int j = lane; j < d; j += 32) gs[j] = g[j] * p.dq_scale;
    } else {
      const bf16* g = dy + t * dy_stride + h * d;
      for (int j = lane; j < d; j += 32) gs[j] = to_f32(g[j]);
    }
  }
  __syncwarp();
  const float* e = p.rope + t * 2 * half;
  for (int i = lane; i < half; i += 32) {
    const float cs = e[i], sn = sign * e[half + i];
    const float a = gs[i], b = gs[i + half];
    gs[i] = a * cs - b * sn;
    gs[i + half] = b * cs + a * sn;
  }
  __syncwarp();
  bf16* o = out + t * out_stride + h * d;
  if (!kBwd || !w) {
    for (int j = lane; j < d; j += 32) o[j] = from_f32<bf16>(gs[j]);
    return;
  }
  // dx = r s g - x r^3 / d sum(s g x)
  float dot = 0.0f;
  for (int j = lane; j < d; j += 32) dot += wscale(w, j, p.zero_centered) * gs[j] * xs[j];
  dot = warp_sum(dot) / float(d);
  for (int j = lane; j < d; j += 32)
    o[j] = from_f32<bf16>(r * wscale(w, j, p.zero_centered) * gs[j] - xs[j] * r * r * r * dot);
}

// Lane l holds elements [l V, l V + V) of a head. A rotary pair (i, i + half), i < half, sits at the same
// offset in lanes l and l ^ (half / V): half / V is a power of two and l < half / V. A warp takes 32 / V
// heads of one token (8 at d = 128) and loads the token's angles and the norm weights once: about 8 L1
// wavefronts against the 32 of the 8 heads' loads and stores. All the heads' loads are issued before the
// math; a short group (the token's last) computes its missing heads on zeros and stores none of them, so that
// the heads' math has no branches to schedule around. Blocks of 4 warps leave fewer of an SM's registers
// idle; the forward at d <= 128 fits 64 registers without spills, all of the SM's 64K: 8 blocks, 32 warps.
// The backward holds twice the loads and takes half the heads (16 / V): at d = 128, 72 registers instead of
// 94 and each warp's chain of reductions half as long, 51 us a qwen3-4b layer instead of 58 (the forward with
// half the heads took 33 us instead of 30).
__host__ __device__ constexpr int warp_heads(int64_t V, bool bwd) {
  return int((bwd ? 16 : 32) / V);
}
constexpr int kVecWarps = 4;
template <int V, bool kBwd>
constexpr int kVecMinBlocks = !kBwd && V <= 4 ? 8 : 1;

// V consecutive floats by float2 (V = 2) or float4 loads: p 4V-byte aligned (16-byte for V = 8).
template <int V>
__device__ __forceinline__ void load_f32(const float* p, float (&x)[V]) {
  if constexpr (V == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    x[0] = v.x;
    x[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < V; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      x[i] = v.x;
      x[i + 1] = v.y;
      x[i + 2] = v.z;
      x[i + 3] = v.w;
    }
  }
}

// wscale(w, j0 + i, zc) for i < V.
template <int V>
__device__ __forceinline__ void load_wscale(const float* w, int j0, bool zc, float (&ws)[V]) {
  if (w) {
    load_f32<V>(w + j0, ws);
#pragma unroll
    for (int i = 0; i < V; ++i) ws[i] = zc ? 1.0f + ws[i] : ws[i];
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) ws[i] = 1.0f;
  }
}

// kF32 (backward): the q heads' dy from p.dq (fp32, scaled), held as floats until their turn.
template <int V, bool kBwd, bool kF32>
__global__ void __launch_bounds__(kVecWarps * 32, kVecMinBlocks<V, kBwd>)
    qk_norm_rope_vec_kernel(QkNormRope p, const bf16* src, int64_t src_stride, const bf16* dy,
                            int64_t dy_stride, bf16* out, int64_t out_stride) {
  constexpr int d = 32 * V, H = warp_heads(V, kBwd);
  const int lane = threadIdx.x & 31;
  const unsigned heads = unsigned(p.nQ + p.nK), groups = (heads + H - 1) / H;
  const unsigned idx = blockIdx.x * kVecWarps + (threadIdx.x >> 5);  // launch_vec: T groups < 2^31
  if (idx >= unsigned(p.T) * groups) return;                         // whole warps
  const unsigned t = idx / groups, h0 = (idx - t * groups) * H;
  const int nh = int(heads - h0 < H ? heads - h0 : H), nq = int(p.nQ) - int(h0);  // heads [0, nq) are q heads
  const int half = int(p.rotary_dim / 2), j0 = lane * V;
  const bool rot = j0 < 2 * half, lo = j0 < half;
  // The lanes below half take -sin (a * cos - b * sin), and the backward rotates by the negative angle.
  float cs[V], sn[V];
  if (rot) {
    const float* e = p.rope + int64_t(t) * (2 * half) + (lo ? j0 : j0 - half);
    load_f32<V>(e, cs);
    load_f32<V>(e + half, sn);
#pragma unroll
    for (int i = 0; i < V; ++i) sn[i] = lo != kBwd ? -sn[i] : sn[i];
  }
  float wsq[V], wsk[V];
  load_wscale<V>(nq > 0 ? p.wq : nullptr, j0, p.zero_centered, wsq);
  load_wscale<V>(nq < nh ? p.wk : nullptr, j0, p.zero_centered, wsk);
  const int64_t col = int64_t(h0) * d + j0;
  const bf16* xp = src + int64_t(t) * src_stride + col;
  const bf16* gp = kBwd ? dy + int64_t(t) * dy_stride + col : nullptr;
  bf16* op = out + int64_t(t) * out_stride + col;
  // The heads stay in bf16 until their turn: half the registers of fp32.
  using W = typename Bf16Word<V>::type;
  W xw[H], gw[H];
  float gf[kF32 ? H : 1][V];
#pragma unroll
  for (int k = 0; k < H; ++k) {
    xw[k] = gw[k] = W{};
    if constexpr (kF32) {
#pragma unroll
      for (int i = 0; i < V; ++i) gf[k][i] = 0.0f;
    }
    if (k < nh) {
      xw[k] = *reinterpret_cast<const W*>(xp + k * d);
      if constexpr (kF32) {
        if (k < nq) load_f32<V>(p.dq + (int64_t(t) * p.nQ + h0 + k) * d + j0, gf[k]);
        else gw[k] = *reinterpret_cast<const W*>(gp + k * d);
      } else if (kBwd) {
        gw[k] = *reinterpret_cast<const W*>(gp + k * d);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < H; ++k) {
    const bool q = k < nq;
    const bool norm = (q ? p.wq : p.wk) != nullptr;
    float x[V], g[V], ws[V], ss = 0.0f;
    load_bf16<V>(reinterpret_cast<const bf16*>(&xw[k]), x);
    if constexpr (kF32) {
      if (q) {
#pragma unroll
        for (int i = 0; i < V; ++i) g[i] = gf[k][i] * p.dq_scale;
      } else {
        load_bf16<V>(reinterpret_cast<const bf16*>(&gw[k]), g);
      }
    } else if (kBwd) {
      load_bf16<V>(reinterpret_cast<const bf16*>(&gw[k]), g);
    }
#pragma unroll
    for (int i = 0; i < V; ++i) {
      ss += x[i] * x[i];
      ws[i] = q ? wsq[i] : wsk[i];
    }
    const float r = norm ? rsqrtf(warp_sum(ss) / float(d) + p.eps) : 1.0f;
    // Forward: g = norm(x), then rotate. Backward: g = rotate^-1(dy), then the norm's backward.
    if (!kBwd) {
#pragma unroll
      for (int i = 0; i < V; ++i) g[i] = x[i] * r * ws[i];
    }
    float o[V];
#pragma unroll
    for (int i = 0; i < V; ++i) o[i] = __shfl_xor_sync(0xffffffffu, g[i], half / V);
    if (rot) {
#pragma unroll
      for (int i = 0; i < V; ++i) g[i] = g[i] * cs[i] + o[i] * sn[i];
    }
    if (kBwd && norm) {
      // dx = r s g - x r^3 / d sum(s g x)
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < V; ++i) dot += ws[i] * g[i] * x[i];
      dot = warp_sum(dot) / float(d);
#pragma unroll
      for (int i = 0; i < V; ++i) g[i] = r * ws[i] * g[i] - x[i] * r * r * r * dot;
    }
    if (k < nh) {  // one vector store: left to itself, the compiler splits the first head's in two
      W w;
      store_bf16<V>(reinterpret_cast<bf16*>(&w), g);
      __stwb(reinterpret_cast<W*>(op + k * d), w);
    }
  }
}

// The register kernel for p's shape and these pointers/strides, or false.
template <bool kBwd>
bool launch_vec(const QkNormRope& p, const bf16* src, int64_t src_stride, const bf16* dy, int64_t dy_stride,
                bf16* out, int64_t out_stride, cudaStream_t stream) {
  const int64_t V = p.d / 32, half = p.rotary_dim / 2;
  if (p.d != 64 && p.d != 128 && p.d != 256) return false;
  if (half < V || half % V != 0 || ((half / V) & (half / V - 1)) != 0) return false;
  if (!bf16_vec_fits(int(V), {src, dy, out}, {src_stride, dy_stride, out_stride})) return false;
  // load_f32 of the table and the weights: every offset is a multiple of V floats.
  for (const float* f : {p.rope, p.wq, p.wk, p.dq})
    if (reinterpret_cast<uintptr_t>(f) % uintptr_t(V == 2 ? 8 : 16) != 0) return false;
  const int64_t H = warp_heads(V, kBwd), warps = p.T * ((p.nQ + p.nK + H - 1) / H);
  if (warps >= (int64_t(1) << 31)) return false;
  const unsigned blocks = unsigned((warps + kVecWarps - 1) / kVecWarps);
  auto go = [&](auto v) {
    constexpr int W = decltype(v)::value;
    auto* kernel = kBwd && p.dq ? qk_norm_rope_vec_kernel<W, kBwd, kBwd> : qk_norm_rope_vec_kernel<W, kBwd, false>;
    kernel<<<blocks, kVecWarps * 32, 0, stream>>>(p, src, src_stride, dy, dy_stride, out, out_stride);
  };
  if (V == 2) go(std::integral_constant<int, 2>{});
  else if (V == 4) go(std::integral_constant<int, 4>{});
  else go(std::integral_constant<int, 8>{});
  TUNE_CUDA_LAUNCHED();
  return true;
}

// Token t's row: the half cos of pos[t] * inv_freq[i], then their sin.
__global__ void rope_table_kernel(const int32_t* pos, InvFreq f, int64_t T, int64_t half, float* table) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * half;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / half, k = i - t * half;
    float sn, cs;
    sincosf(float(pos[t]) * f.v[k], &sn, &cs);
    table[t * 2 * half + k] = cs;
    table[t * 2 * half + half + k] = sn;
  }
}

void check(const QkNormRope& p) {
  TUNE_CHECK(p.d <= kMaxD && p.rotary_dim <= p.d && p.rotary_dim % 2 == 0 && p.rope)
      << "qk_norm_rope: head dim " << p.d << " / rotary dim " << p.rotary_dim << " unsupported, or no rope table";
}

}  // namespace

void rope_table(const int32_t* pos, int64_t T, int64_t rotary_dim, double theta, float* table, void* stream) {
  TUNE_CHECK(rotary_dim <= kMaxD && rotary_dim % 2 == 0) << "rope_table: rotary dim " << rotary_dim;
  const int64_t half = rotary_dim / 2;
  if (T * half == 0) return;
  InvFreq f{};
  for (int64_t i = 0; i < half; ++i) f.v[i] = 1.0f / std::pow(float(theta), float(2 * i) / float(rotary_dim));
  rope_table_kernel<<<grid_blocks(T * half, 256), 256, 0, cudaStream_t(stream)>>>(pos, f, T, half, table);
  TUNE_CUDA_LAUNCHED();
}

void qk_norm_rope_fwd(const QkNormRope& p, const void* src, int64_t src_stride, void* dst, int64_t dst_stride,
                      void* stream) {
  check(p);
  const int64_t n = p.T * (p.nQ + p.nK);
  if (n == 0) return;
  if (launch_vec<false>(p, static_cast<const bf16*>(src), src_stride, nullptr, 0, static_cast<bf16*>(dst),
                        dst_stride, cudaStream_t(stream)))
    return;
  qk_norm_rope_kernel<false><<<unsigned((n + kWarps - 1) / kWarps), kWarps * 32, 0, cudaStream_t(stream)>>>(
      p, static_cast<const bf16*>(src), src_stride, nullptr, 0, static_cast<bf16*>(dst), dst_stride);
  TUNE_CUDA_LAUNCHED();
}

void qk_norm_rope_bwd(const QkNormRope& p, const void* src, int64_t src_stride, const void* dy, int64_t dy_stride,
                      void* dx, int64_t dx_stride, void* stream) {
  check(p);
  const int64_t n = p.T * (p.nQ + p.nK);
  if (n == 0) return;
  if (launch_vec<true>(p, static_cast<const bf16*>(src), src_stride, static_cast<const bf16*>(dy), dy_stride,
                       static_cast<bf16*>(dx), dx_stride, cudaStream_t(stream)))
    return;
  qk_norm_rope_kernel<true><<<unsigned((n + kWarps - 1) / kWarps), kWarps * 32, 0, cudaStream_t(stream)>>>(
      p, static_cast<const bf16*>(src), src_stride, static_cast<const bf16*>(dy), dy_stride, static_cast<bf16*>(dx),
      dx_stride);
  TUNE_CUDA_LAUNCHED();
}

}  // namespace tune::cuda
