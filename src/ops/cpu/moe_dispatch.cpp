// moe_dispatch on the CPU: a counting sort of the slots by expert and plain row loops, sums in double.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/moe_dispatch.h"

namespace tune::cpu {

void moe_sort(const int32_t* experts, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* order,
              int32_t* slot_row) {
  const int64_t n = T * k;
  std::memset(offsets, 0, size_t(E + 1) * sizeof(int32_t));
  for (int64_t i = 0; i < n; ++i) ++offsets[experts[i] + 1];
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  // Slots in increasing order, each to the next free row of its expert: stable.
  std::vector<int32_t> next(offsets, offsets + E);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = next[size_t(experts[i])]++;
    order[row] = int32_t(i);
    slot_row[i] = row;
  }
}

template <class R>
void moe_gather(const R* x, int64_t T, int64_t H, int64_t k, const int32_t* order, int64_t rows, R* xs) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(xs + r * H, x + (order[r] / k) * H, size_t(H) * sizeof(R));
}

namespace {
// out[t] = (accumulate ? out[t] : 0) + sum_j w_j ys[slot_row[t k + j]], with w_j = 1 when weights is null.
template <class R>
void combine(const R* ys, const int32_t* slot_row, const R* weights, int64_t T, int64_t k, int64_t H, R* out,
             bool accumulate) {
  std::vector<double> acc(static_cast<size_t>(H));
  for (int64_t t = 0; t < T; ++t) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      const double w = weights ? double(weights[t * k + j]) : 1.0;
      const R* y = ys + int64_t(slot_row[t * k + j]) * H;
      for (int64_t c = 0; c < H; ++c) acc[size_t(c)] += w * double(y[c]);
    }
    R* o = out + t * H;
    for (int64_t c = 0; c < H; ++c) o[c] = R((accumulate ? double(o[c]) : 0.0) + acc[size_t(c)]);
  }
}
}  // namespace

template <class R>
void moe_combine_fwd(const R* ys, const int32_t* slot_row, const R* weights, int64_t T, int64_t k, int64_t H,
                     R* out, bool accumulate) {
  combine(ys, slot_row, weights, T, k, H, out, accumulate);
}

template <class R>
void moe_combine_bwd(const R* dout, const R* ys, const int32_t* slot_row, const R* weights, int64_t T,
                     int64_t k, int64_t H, R* dys, R* dweights) {
  for (int64_t i = 0; i < T * k; ++i) {
    const R* d = dout + (i / k) * H;
    const R* y = ys + int64_t(slot_row[i]) * H;
    R* dy = dys + int64_t(slot_row[i]) * H;
    double dot = 0;
    for (int64_t c = 0; c < H; ++c) {
      dy[c] = R(double(weights[i]) * double(d[c]));
      dot += double(d[c]) * double(y[c]);
    }
    dweights[i] = R(dot);
  }
}

template <class R>
void moe_scatter_add(const R* dxs, const int32_t* slot_row, int64_t T, int64_t k, int64_t H, R* dx,
                     bool accumulate) {
  combine(dxs, slot_row, static_cast<const R*>(nullptr), T, k, H, dx, accumulate);
}

template void moe_gather<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, int64_t, float*);
template void moe_gather<double>(const double*, int64_t, int64_t, int64_t, const int32_t*, int64_t, double*);
template void moe_combine_fwd<float>(const float*, const int32_t*, const float*, int64_t, int64_t, int64_t,
                                     float*, bool);
template void moe_combine_fwd<double>(const double*, const int32_t*, const double*, int64_t, int64_t, int64_t,
                                      double*, bool);
template void moe_combine_bwd<float>(const float*, const float*, const int32_t*, const float*, int64_t,
                                     int64_t, int64_t, float*, float*);
template void moe_combine_bwd<double>(const double*, const double*, const int32_t*, const double*, int64_t,
                                      int64_t, int64_t, double*, double*);
template void moe_scatter_add<float>(const float*, const int32_t*, int64_t, int64_t, int64_t, float*, bool);
template void moe_scatter_add<double>(const double*, const int32_t*, int64_t, int64_t, int64_t, double*,
                                      bool);

}  // namespace tune::cpu
