// The fast path of the CPU matrix products with weights kept quantized or in f16 (quant/dot.h is the scalar
// reference). Weight rows are multiplied with activation rows prepared once per row (Q8_0 / Q8_1 / Q8_K as in
// quant/dot.h; f32 for f16 weights). Every integer block product is summed exactly, so a result depends only
// on its float steps, which follow the kernels llama.cpp's CPU backend runs on Xeons with AMX / AVX512-VNNI
// (ggml-cpu/amx/mmq.cpp for the types it packs, ggml's AVX2 vec_dot otherwise), per output:
//   Q8_0, Q4_0:  c = fma(float(Σ w·a over the block), d_w·d_a, c), block after block;
//   Q4_1:        the same, then c = fma(m_w, s_a, c);
//   Q4_K, Q5_K:  per 256-block isum = Σ_sub scale·(Σ q·a) and msum = Σ_sub min·(bsum pair), then
//                c = fma(float(isum), d_w·d_a, c) and c = fma(float(msum), −(dmin_w·d_a), c);
//   Q6_K:        isum = Σ_group scale·(Σ (q − 32)·a), c = fma(float(isum), d_w·d_a, c);
//   Q3_K:        8 integer lanes (value i of each 32 to lane (i mod 32) / 4), added per 256-block into 8 f32
//                lanes with one fma each (× d_a·d_w); at the end ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7));
//   F16:         f32 activations (not rounded), 16 f32 lanes (lane l takes columns ≡ l mod 16, one fma each),
//                reduced as GCC reduces an AVX-512 register (halves, quarters, then pairs).
// DotOrder::SplitMins is ggml's interleaved ("repacked", x8) Q4_K kernel, which llama.cpp uses for MoE expert
// matrices: the scale and min terms in two accumulators, subtracted at the end.
// The kernels exist in scalar C++ and in AVX2 (+FMA/F16C) form, those of Q8_0, Q4_K, Q5_K, Q6_K and F16 also
// in AVX-512 (BW/VL/VNNI) form (Q4_1 is scalar only), selected at run time (quant/cpu_features.h); every form
// gives the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/dtype.h"

namespace tune {

class PackedWeights;  // quant/dot_packed.h

enum class DotOrder {
  Standard,   // the order above
  SplitMins,  // Q4_K with separate scale and min accumulators
};

// True when vec_dot_fast computes `wtype` rows of `cols` values in `order`: Q8_0, Q4_0, Q4_1 (cols % 32 ==
// 0), Q3_K, Q4_K, Q5_K, Q6_K (cols % 256 == 0), F16 (cols % 16 == 0) in the standard order; Q4_K split.
bool vec_dot_fast_supported(DType wtype, int64_t cols, DotOrder order = DotOrder::Standard);

// Bytes of one activation row for vec_dot_fast and its preparation from `cols` f32 values: the bytes of
// quant/dot.h's quantizers (computed with AVX-512 where available), a copy for F16 weights.
size_t vec_dot_fast_act_bytes(DType wtype, int64_t cols);
void vec_dot_fast_prepare(DType wtype, const float* x, void* act, int64_t cols);

// Whether llama.cpp's CPU backend on such a Xeon multiplies an (N, K) matrix of `wtype` with one of the
// kernels above, and in which order: the AMX-path types (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, F16) when N is a
// multiple of 32, Q3_K always (standard); for MoE expert matrices (expert = true; ggml's AMX path does not
// take them) Q4_K when N is a multiple of 8 (split mins) and Q3_K. False otherwise: quant/dot.h's reference
// order is then closer.
bool vec_dot_fast_plan(DType wtype, int64_t N, int64_t K, bool expert, DotOrder* order);

// y[t * y_stride + r] = w_r · a_t for weight rows r < rows (w_row_bytes apart) and activation rows t < nact
// (act_row_bytes apart, prepared by vec_dot_fast_prepare). Single-threaded: callers split the rows.
void vec_dot_fast(DType wtype, DotOrder order, const void* w, size_t w_row_bytes, int64_t rows,
                  const void* act, size_t act_row_bytes, int64_t nact, int64_t cols, float* y,
                  int64_t y_stride);

// One matrix of vec_dot_fast_matmul: y (T, N) = x W^T (+ bias), W = N rows of K values in `wtype`.
struct FastMatmul {
  const void* w;
  DType wtype;
  int64_t N;
  DotOrder order;
  const float* bias;                      // (N) or null
  float* y;                               // (T, N)
  const PackedWeights* packed = nullptr;  // the same matrix repacked (standard order, same bits), or null
};

// Multiplies the rows x (T, K) f32 by every matrix of `mats` (each vec_dot_fast_supported): every activation
// format needed is prepared once per row, then the weight rows of all matrices are split over the threads of
// core/threads.h (one parallel region for, e.g., the q, k and v projections together).
void vec_dot_fast_matmul(const float* x, int64_t T, int64_t K, std::span<const FastMatmul> mats);

}  // namespace tune
