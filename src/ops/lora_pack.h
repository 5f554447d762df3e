// LoRA folded into the frozen products on CUDA (model/forward_cuda).
//
// Forward: a frozen weight W (N, K) is stored with row stride K + kx; the kx extra columns of output row o hold
// s B_t[o - col_t] for the target t whose output rows cover o (its r columns at that target's offset, zeros
// elsewhere), and the product's input rows carry u = x A^T (the targets' r columns each) beside x. One GEMM over
// K + kx then gives x W^T + s u_t B_t^T without a second pass over the output.
//
// Input gradient: W may carry n r extra rows after its N that hold the group's A's (n r, K), and the output
// gradient's rows the n r columns g = s dy B beside dy. One GEMM over N + n r then gives dy W + g A.
//
// lora_pack refreshes those columns and rows from the fp32 masters (bf16, scaled) after each optimizer step.
#pragma once

#include <cstdint>

namespace tune::cuda {

// One block of the masters: `rows` rows of `width` floats from masters[src] (B: width r, scale s; A: width K,
// scale 1), to bf16 rows `ld` elements apart from dst.
struct LoraPackSeg {
  int64_t src = 0;
  void* dst = nullptr;
  int64_t ld = 0;
  int64_t rows = 0, width = 0;
  float scale = 1.0f;
};

// segs: a device array of n segments, none with more than max_elems (rows x width) elements. Defined when built
// with TUNE_CUDA.
void lora_pack(const float* masters, const LoraPackSeg* segs, int64_t n, int64_t max_elems, void* stream = nullptr);

}  // namespace tune::cuda
