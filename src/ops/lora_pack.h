// LoRA folded into the frozen product on CUDA (model/forward_cuda). A frozen weight W (N, K) is stored with row
// stride K + kx; the kx extra columns of output row o hold s B_t[o - col_t] for the target t whose output rows
// cover o (its r columns at that target's offset, zeros elsewhere), and the product's input rows carry
// u = x A^T (the targets' r columns each) beside x. One GEMM over K + kx then gives x W^T + s u_t B_t^T without
// a second pass over the output. lora_pack_b refreshes those columns from the fp32 masters (bf16, scaled) after
// each optimizer step.
#pragma once

#include <cstdint>

namespace tune::cuda {

// One run of B rows: `rows` rows of r floats from masters[src], to bf16 rows `ld` elements apart from dst.
struct LoraPackSeg {
  int64_t src = 0;
  void* dst = nullptr;
  int64_t ld = 0;
  int64_t rows = 0;
};

// segs: a device array of n segments, none longer than max_rows. Defined when built with TUNE_CUDA.
void lora_pack_b(const float* masters, const LoraPackSeg* segs, int64_t n, int64_t max_rows, int64_t r, float s,
                 void* stream = nullptr);

}  // namespace tune::cuda
