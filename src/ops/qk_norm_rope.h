// Fused per-head RMSNorm (Qwen3's q_norm / k_norm; optional) and RoPE for the training path on CUDA, reading the
// q and k heads out of the fused qkv projection output. The CPU reference is rmsnorm (per head) followed by rope.
// fwd: src rows (T) of src_stride elements, each starting with nQ query heads then nK key heads of d elements
//      -> dst rows (T) of dst_stride elements: y = rope(norm(x)) with norm(x) = x r w (or x r (1 + w) when
//      zero_centered), r = 1 / sqrt(mean(x^2) + eps); q heads use wq, k heads wk; null weights = no norm.
// bwd: dy (dst layout) and the forward's src -> dx written into dx rows (src layout); the weights are frozen.
// All bf16 (weights f32), d <= 256, rotary_dim <= d (even). The rotation angles come from a table made once per
// micro-batch by rope_table (every layer reuses it), (T, 2, rotary_dim / 2) floats: per token the cos of
// pos[t] * inv_freq[i], i < rotary_dim / 2, then their sin; the angle and inv_freq[i] =
// theta^(-2i / rotary_dim) in fp32 as transformers computes them.
#pragma once

#include <cstdint>

namespace tune::cuda {

struct QkNormRope {
  int64_t T, nQ, nK, d, rotary_dim;
  const float* wq = nullptr;
  const float* wk = nullptr;
  float eps = 1e-6f;
  bool zero_centered = false;
  const float* rope = nullptr;  // rope_table's output
  // Backward: the q heads' output gradient as dq_scale * dq, (T, nQ, d) fp32 (the fused attention's accumulators,
  // flash_attention_bwd with dq null), read in place of dy's first nQ heads; null: dy holds them.
  const float* dq = nullptr;
  float dq_scale = 1.0f;
};

void rope_table(const int32_t* pos, int64_t T, int64_t rotary_dim, double theta, float* table, void* stream = nullptr);
void qk_norm_rope_fwd(const QkNormRope& p, const void* src, int64_t src_stride, void* dst, int64_t dst_stride,
                      void* stream = nullptr);
void qk_norm_rope_bwd(const QkNormRope& p, const void* src, int64_t src_stride, const void* dy, int64_t dy_stride,
                      void* dx, int64_t dx_stride, void* stream = nullptr);

}  // namespace tune::cuda
