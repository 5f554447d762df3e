// linear forward with quantized / f16 / bf16 weights on the CPU, as ggml's mul_mat: the activation rows are
// converted once (quant/dot.h), then every output is one ggml-style dot product, threaded over output
// columns. Matrices that llama.cpp's CPU backend gives to its AMX-path kernels (quant/dot_fast.h: Q8_0, Q4_0,
// Q4_1, Q4_K, Q5_K, Q6_K and F16 with a multiple of 32 rows) take the SIMD fast path in that order; the
// others the scalar reference (quant/dot.h).
#include <algorithm>
#include <vector>

#include "core/threads.h"
#include "ops/linear.h"
#include "quant/dot.h"
#include "quant/dot_fast.h"
#include "quant/quant.h"

namespace tune::cpu {

void linear_quant_fwd(const float* x, const void* w, DType wtype, const float* b, float* y, int64_t T,
                      int64_t K, int64_t N) {
  DotOrder order;
  if (vec_dot_fast_plan(wtype, N, K, false, &order)) {
    const FastMatmul m{w, wtype, N, order, b, y};
    vec_dot_fast_matmul(x, T, K, {&m, 1});
    return;
  }
  const size_t arow = vec_dot_act_row_bytes(wtype, K);
  const size_t wrow =
      (wtype == DType::F16 || wtype == DType::BF16) ? size_t(K) * 2 : quant_row_bytes(wtype, K);
  std::vector<uint8_t> act(arow * size_t(T));
  parallel_for(
      T,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          vec_dot_quantize_act(wtype, x + t * K, act.data() + size_t(t) * arow, K);
      },
      1);
  const auto* wb = static_cast<const uint8_t*>(w);
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
          const uint8_t* wr = wb + size_t(n) * wrow;
          for (int64_t t = 0; t < T; ++t) {
            const float v = vec_dot(wtype, wr, act.data() + size_t(t) * arow, K);
            y[t * N + n] = b ? v + b[n] : v;
          }
        }
      },
      std::max<int64_t>(1, 8192 / std::max<int64_t>(K * T, 1)));
}

}  // namespace tune::cpu
