// lm_head_loss on CUDA, per chunk: gather the chunk's rows of x, one GEMM for the bf16 logits, one block per row
// for the softmax statistics, loss and bf16 dlogits written over the logits (fp32 math), one GEMM for the rows'
// input gradients, and a scatter-add into dx (each row appears once, so no atomics). The softmax kernel reads the
// logits twice: once for the max and sum of exponentials together (online softmax), once for the gradient.
#include "ops/cuda/kernel_util.cuh"
#include "ops/gemm.h"
#include "ops/lm_head_loss.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 1024;

int64_t align_up(int64_t b) {
  return (b + 255) / 256 * 256;
}

__global__ void gather_rows_kernel(const bf16* x, const int32_t* rows, bf16* xc, int64_t n, int64_t H) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * H; i += int64_t(gridDim.x) * blockDim.x)
    xc[i] = x[int64_t(rows[i / H]) * H + i % H];
}

__global__ void scatter_add_rows_kernel(const float* dxc, const int32_t* rows, float* dx, int64_t n, int64_t H) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * H; i += int64_t(gridDim.x) * blockDim.x)
    dx[int64_t(rows[i / H]) * H + i % H] += dxc[i];
}

// Online softmax statistics: (m, s) pairs combine as m = max(m1, m2), s = s1 e^(m1 - m) + s2 e^(m2 - m).
__device__ __forceinline__ void ms_add(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

// One block per row, two passes over its logits: the max and the sum of exponentials together (online), then the
// loss and dlogits = scale (p - onehot) in place of the logits. kVec: V % 8 == 0, so rows are 16-byte aligned.
template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    softmax_ce_kernel(bf16* logits, const int32_t* targets, float scale, float* loss, int64_t V) {
  __shared__ float sm[32], ss[32];
  bf16* z = logits + int64_t(blockIdx.x) * V;
  const int32_t y = targets[blockIdx.x];
  const float zy = to_f32(z[y]);  // before the barrier below: the second pass overwrites it
  float m = -INFINITY, s = 0.0f;
  if (kVec) {
    const uint4* z8 = reinterpret_cast<const uint4*>(z);
    for (int64_t i = threadIdx.x; i < V / 8; i += blockDim.x) {
      const uint4 raw = z8[i];
      const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&raw);
      float v[8];
      for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(p[k]);
        v[2 * k] = f.x;
        v[2 * k + 1] = f.y;
      }
      float mx = v[0];
      for (int k = 1; k < 8; ++k) mx = fmaxf(mx, v[k]);
      float e = 0.0f;
      for (int k = 0; k < 8; ++k) e += expf(v[k] - mx);
      ms_add(m, s, mx, e);
    }
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) ms_add(m, s, to_f32(z[i]), 1.0f);
  }
  for (int o = 16; o > 0; o >>= 1) ms_add(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sm[warp] = m, ss[warp] = s;
  __syncthreads();
  m = lane < int(blockDim.x >> 5) ? sm[lane] : -INFINITY;
  s = lane < int(blockDim.x >> 5) ? ss[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) ms_add(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const float inv = 1.0f / s;
  if (kVec) {
    uint4* z8 = reinterpret_cast<uint4*>(z);
    for (int64_t i = threadIdx.x; i < V / 8; i += blockDim.x) {
      uint4 raw = z8[i];
      __nv_bfloat162* p = reinterpret_cast<__nv_bfloat162*>(&raw);
      const int64_t j = 8 * i;
      for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(p[k]);
        float g0 = scale * expf(f.x - m) * inv, g1 = scale * expf(f.y - m) * inv;
        if (y == j + 2 * k) g0 -= scale;
        if (y == j + 2 * k + 1) g1 -= scale;
        p[k] = __floats2bfloat162_rn(g0, g1);
      }
      z8[i] = raw;
    }
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
      z[i] = from_f32<bf16>(scale * (expf(to_f32(z[i]) - m) * inv - (i == y ? 1.0f : 0.0f)));
  }
  if (threadIdx.x == 0) loss[blockIdx.x] = m + logf(s) - zy;
}

}  // namespace

int64_t lm_head_loss_workspace_bytes(int64_t chunk, int64_t H, int64_t V) {
  return align_up(chunk * H * 2) + align_up(chunk * V * 2) + align_up(chunk * H * 4);
}

void lm_head_loss(const void* x, const void* W, const int32_t* rows, const int32_t* targets, int64_t n, int64_t H,
                  int64_t V, float scale, float* dx, float* loss, int64_t chunk, void* workspace) {
  char* ws = static_cast<char*>(workspace);
  bf16* xc = reinterpret_cast<bf16*>(ws);
  bf16* logits = reinterpret_cast<bf16*>(ws + align_up(chunk * H * 2));  // then dlogits
  float* dxc = reinterpret_cast<float*>(ws + align_up(chunk * H * 2) + align_up(chunk * V * 2));
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t c = std::min(chunk, n - c0);
    gather_rows_kernel<<<grid_blocks(c * H, 256), 256>>>(static_cast<const bf16*>(x), rows + c0, xc, c, H);
    TUNE_CUDA_LAUNCHED();
    gemm(c, V, H, 1.0f, {xc, H, false}, {W, H, true}, DType::BF16, 0.0f, nullptr, logits, V, DType::BF16);
    if (V % 8 == 0)
      softmax_ce_kernel<true><<<unsigned(c), kThreads>>>(logits, targets + c0, scale, loss + c0, V);
    else
      softmax_ce_kernel<false><<<unsigned(c), kThreads>>>(logits, targets + c0, scale, loss + c0, V);
    TUNE_CUDA_LAUNCHED();
    gemm(c, H, V, 1.0f, {logits, V, false}, {W, H, false}, DType::BF16, 0.0f, nullptr, dxc, H, DType::F32);
    scatter_add_rows_kernel<<<grid_blocks(c * H, 256), 256>>>(dxc, rows + c0, dx, c, H);
    TUNE_CUDA_LAUNCHED();
  }
}

}  // namespace tune::cuda
