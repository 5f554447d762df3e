// The backward of a LoRA's second product, y[:, cols] (+)= s u B^T (u = x A^T, (T, r); B (N, r)):
//   dB += s dy^T u   (N, r)    the gradient of B's fp32 master
//   du  = s dy B     (T, r)    the gradient that the first product takes back to A and x
// Both read the whole output gradient dy (T, N); the CUDA kernel makes both products in one pass over it.
// A call covers several B blocks ("parts") at once: a part is `rows` rows of one target's B and the same
// number of columns of dy; a target whose output columns are not contiguous has several parts, and its du is
// their sum.
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
// One part: dy (T, N) stride ldy, u (T, r) stride ldu, b (N, r) -> db (N, r) +=, du (T, r) stride lddu
// (overwritten, or added to with accumulate_du).
template <class R>
void lora_b_bwd(const R* dy, int64_t ldy, const R* u, int64_t ldu, const R* b, float s, R* db, R* du,
                int64_t lddu, bool accumulate_du, int64_t T, int64_t N, int64_t r);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA) for the training path: device pointers, bf16 operands,
// fp32 dB, fp32 accumulation.
namespace cuda {
constexpr int kLoraBMaxParts = 8;
struct LoraBPart {
  const void* dy = nullptr;  // (T, rows) bf16, row stride ldy: the part's columns of the output gradient
  const void* u = nullptr;   // (T, r) bf16, row stride ldu: its target's u
  const void* b = nullptr;   // (rows, r) bf16: its rows of B
  float* db = nullptr;       // (rows, r), +=
  int64_t rows = 0;
  int target = 0;  // du columns [target r, target r + r)
};
// Whether the fused kernel takes these parts (r of 16 or 32; row counts, strides and addresses in whole
// 16-byte units; at most kLoraBMaxParts). Otherwise the caller makes the products itself.
bool lora_b_bwd_supported(const LoraBPart* parts, int n, int64_t r, int64_t ldy, int64_t ldu, const void* du,
                          int64_t lddu);
// Workspace for parts of these row counts over T rows (the kernel's partial sums); it serves calls with T
// rows or fewer.
int64_t lora_b_bwd_workspace_bytes(int64_t T, int64_t r, const int64_t* rows, int n);
// du (T, n_targets r) stride lddu, every target's r columns overwritten. Deterministic: partial sums are
// added in a fixed order.
void lora_b_bwd(const LoraBPart* parts, int n, int64_t T, int64_t r, int64_t ldy, int64_t ldu, float s,
                void* du, int64_t lddu, void* workspace, int64_t workspace_bytes, void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
