// qk_norm_rope on CUDA. Head dims 64, 128 and 256 (with a rotary half that splits into a power-of-two number of
// lanes): a warp per (token, 4 heads), each head in registers, V = d / 32 elements per lane moved by one vector
// load, rotated across lanes with one shuffle. Other shapes: a warp per (token, head) staged in shared memory,
// which takes any head dim up to 256 and any rotary split, more slowly. The (cos, sin) table is made once per
// micro-batch: inv_freq formed on the host in fp32 (as rope.cu), angle = pos * inv_freq in fp32, sincosf at full
// accuracy (positions reach 10^5 and more).
#include <cmath>

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
    const bf16* g = dy + t * dy_stride + h * d;
    for (int j = lane; j < d; j += 32) gs[j] = to_f32(g[j]);
  }
  __syncwarp();
  const float2* cs_sn = reinterpret_cast<const float2*>(p.rope) + t * half;
  for (int i = lane; i < half; i += 32) {
    const float2 e = cs_sn[i];
    const float cs = e.x, sn = sign * e.y;
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

// Lane l holds elements [l V, l V + V) of a head. A rotary pair (i, i + half), i < half, sits at the same offset
// in lanes l and l ^ (half / V): half / V is a power of two and l < half / V. Each warp takes kHeads heads of one
// token, with the token's angles loaded once and all the heads' loads issued before the math.
constexpr int kHeads = 4;

template <int V, bool kBwd>
__global__ void __launch_bounds__(256)
    qk_norm_rope_vec_kernel(QkNormRope p, const bf16* src, int64_t src_stride, const bf16* dy, int64_t dy_stride,
                            bf16* out, int64_t out_stride) {
  constexpr int d = 32 * V;
  const int lane = threadIdx.x & 31;
  const int64_t heads = p.nQ + p.nK, groups = (heads + kHeads - 1) / kHeads;
  const int64_t idx = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (idx >= p.T * groups) return;  // whole warps
  const int64_t t = idx / groups, h0 = idx % groups * kHeads;
  const int nh = int(heads - h0 < kHeads ? heads - h0 : kHeads);
  const int half = int(p.rotary_dim / 2), j0 = lane * V;
  const bool rot = j0 < 2 * half, lo = j0 < half;
  float cs[V], sn[V];
  if (rot) {
    const float2* e = reinterpret_cast<const float2*>(p.rope) + t * half + (lo ? j0 : j0 - half);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const float2 c = e[i];
      cs[i] = c.x;
      sn[i] = kBwd ? -c.y : c.y;
    }
  }
  float x[kHeads][V], g[kHeads][V];
#pragma unroll
  for (int k = 0; k < kHeads; ++k) {
    if (k >= nh) break;
    load_bf16<V>(src + t * src_stride + (h0 + k) * d + j0, x[k]);
    if (kBwd) load_bf16<V>(dy + t * dy_stride + (h0 + k) * d + j0, g[k]);
  }
#pragma unroll
  for (int k = 0; k < kHeads; ++k) {
    if (k >= nh) break;
    const float* w = h0 + k < p.nQ ? p.wq : p.wk;
    float ws[V], ss = 0.0f;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      ss += x[k][i] * x[k][i];
      ws[i] = wscale(w, j0 + i, p.zero_centered);
    }
    const float r = w ? rsqrtf(warp_sum(ss) / float(d) + p.eps) : 1.0f;
    // Forward: g = norm(x), then rotate. Backward: g = rotate^-1(dy), then the norm's backward.
    if (!kBwd) {
#pragma unroll
      for (int i = 0; i < V; ++i) g[k][i] = x[k][i] * r * ws[i];
    }
    float o[V];
#pragma unroll
    for (int i = 0; i < V; ++i) o[i] = __shfl_xor_sync(0xffffffffu, g[k][i], half / V);
    if (rot) {
#pragma unroll
      for (int i = 0; i < V; ++i) g[k][i] = lo ? g[k][i] * cs[i] - o[i] * sn[i] : g[k][i] * cs[i] + o[i] * sn[i];
    }
    if (kBwd && w) {
      // dx = r s g - x r^3 / d sum(s g x)
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < V; ++i) dot += ws[i] * g[k][i] * x[k][i];
      dot = warp_sum(dot) / float(d);
#pragma unroll
      for (int i = 0; i < V; ++i) g[k][i] = r * ws[i] * g[k][i] - x[k][i] * r * r * r * dot;
    }
    store_bf16<V>(out + t * out_stride + (h0 + k) * d + j0, g[k]);
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
  const int64_t warps = p.T * ((p.nQ + p.nK + kHeads - 1) / kHeads);
  const unsigned blocks = unsigned((warps + 7) / 8);
  auto go = [&](auto kernel) {
    kernel<<<blocks, 256, 0, stream>>>(p, src, src_stride, dy, dy_stride, out, out_stride);
  };
  if (V == 2) go(qk_norm_rope_vec_kernel<2, kBwd>);
  else if (V == 4) go(qk_norm_rope_vec_kernel<4, kBwd>);
  else go(qk_norm_rope_vec_kernel<8, kBwd>);
  TUNE_CUDA_LAUNCHED();
  return true;
}

__global__ void rope_table_kernel(const int32_t* pos, InvFreq f, int64_t T, int64_t half, float2* table) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * half; i += int64_t(gridDim.x) * blockDim.x) {
    float sn, cs;
    sincosf(float(pos[i / half]) * f.v[i % half], &sn, &cs);
    table[i] = make_float2(cs, sn);
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
  rope_table_kernel<<<grid_blocks(T * half, 256), 256, 0, cudaStream_t(stream)>>>(pos, f, T, half,
                                                                                 reinterpret_cast<float2*>(table));
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
