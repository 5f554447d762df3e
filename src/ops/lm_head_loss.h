// The output head fused with cross-entropy for training on CUDA, chunked over the trained rows so that the
// (tokens x vocab) logits never exist: for each chunk of at most `chunk` trained rows r with target y_r,
//   logits = x[r] W^T (bf16, V, as transformers' bf16 head makes them), loss_r = logsumexp(logits) - logits[y_r]
//   (fp32 math), dx[r] += scale * (softmax(logits) - onehot(y_r)) W (dlogits bf16, over the logits).
// Rows without a target are never computed. x (T, H) bf16, W (V, H) bf16, rows/targets (n) i32 on the device,
// dx (T, H) f32 (accumulated), loss (n) f32 (overwritten). `workspace` holds lm_head_loss_workspace_bytes(chunk,
// H, V) bytes. The CPU reference is linear + cross_entropy.
#pragma once

#include <cstdint>

namespace tune::cuda {

int64_t lm_head_loss_workspace_bytes(int64_t chunk, int64_t H, int64_t V);
void lm_head_loss(const void* x, const void* W, const int32_t* rows, const int32_t* targets, int64_t n, int64_t H,
                  int64_t V, float scale, float* dx, float* loss, int64_t chunk, void* workspace);

}  // namespace tune::cuda
