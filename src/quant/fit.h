// Internal to src/quant: the scale searches shared by the block formats, and the f16 round trip they use.
// Each reproduces the arithmetic of ggml's reference quantizers operation for operation (float, no
// contraction), because tune's quantized bytes must equal llama-quantize's; docs/quant_check.md records the
// check. Depends on core/dtype.h only.
#pragma once

// Byte identity needs every a·b + c rounded twice, as in ggml's reference build (x86-64 without FMA). GCC
// fuses such expressions into FMA by default even in ISO C++ mode once the target has FMA (-march=native,
// aarch64), and clang does within an expression, so contraction is switched off for the quant sources (they
// all include this header).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace tune::quant {

// Weighted fits of a sub-block give up below this amplitude and write zeros (ggml's GROUP_MAX_EPS).
constexpr float kGroupEps = 1e-15f;

// Round to the nearest integer, ties to even, by adding 1.5·2^23 and reading the mantissa (exact for |v| <
// 2^22).
inline int round_nearest(float v) {
  float f = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &f, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Stores a scale as f16 and returns the value a reader gets back from the file.
inline float f16_round(float v) {
  return f16_to_f32(f32_to_f16(v));
}

// Symmetric fit: x[i] ≈ scale·(L[i] − nmax), L[i] ∈ [0, 2·nmax). Minimises Σ w·(x − scale·l)² over 19 trial
// inverse scales −(nmax + 0.1·k)/max (k = −9..9), max being the signed value of largest magnitude.
// w = `weights` or x² when null. Returns the scale (0 and L = 0 for an all-zero group).
float fit_symmetric(int n, int nmax, const float* x, int8_t* L, const float* weights);

// Symmetric fit with per-element refinement (the 3-bit scales): starts from the −nmax/max grid and moves one
// level at a time while the x²-weighted correlation (Σwxl)²/Σwl² improves, up to 5 passes. L[i] ∈ [0,
// 2·nmax).
float fit_symmetric_refined(int n, int nmax, const float* x, int8_t* L);

// Affine fit with a non-positive offset: x[i] ≈ scale·L[i] − min_out, L[i] ∈ [0, nmax], min_out ≥ 0. Tries
// iscale = (rmin + rdelta·k + nmax)/(max − min) for k = 0..nstep, solving weighted least squares for (scale,
// min) each time, and keeps the lowest weighted squared error (absolute error when `use_mad`). Returns the
// scale.
float fit_affine(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* min_out,
                 float rmin, float rdelta, int nstep, bool use_mad);

// Fit of non-negative values (sub-block scales or mins) to levels 0..nmax of one shared scale, weighted by
// `weights`: 9 trial inverse scales (nmax + 0.1·k)/max, then up to 5 passes of one-level moves. Returns the
// scale.
float fit_positive(int n, int nmax, const float* x, uint8_t* L, const float* weights);

}  // namespace tune::quant
