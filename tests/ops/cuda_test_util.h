// Helpers for the CUDA op tests (test_*_cuda.cpp): skip without a device, copies to the device in a storage
// dtype, inputs rounded to that dtype (so the double CPU reference sees exactly what the kernel sees),
// NaN-poisoned outputs (an element a kernel never writes fails the comparison), and |got - ref| <= atol +
// rtol |ref| over all elements, reporting the count and the worst one.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "op_test_util.h"

#define TUNE_REQUIRE_CUDA() \
  if (!::tune::cuda_available()) GTEST_SKIP() << "no CUDA device"

namespace tune::test {

// Relative rounding of one bf16 store: 8 significant bits, half an ulp = 2^-9 ~ 2e-3; tests allow 1e-2.
constexpr double kBf16Rtol = 1e-2;

// The values `t` (f32 on the CPU) holds once stored as `dt`: identity for f32, rounded to bf16 otherwise.
inline Tensor rounded(const Tensor& t, DType dt) {
  return dt == DType::F32 ? t.clone() : t.to(dt).to(DType::F32);
}

inline Tensor on_cuda(const Tensor& t, DType dt) {
  return t.to(dt, Device::CUDA);
}

inline std::vector<double> doubles(const Tensor& t) {
  Tensor h = t.to(DType::F32, Device::CPU);
  return std::vector<double>(h.f32(), h.f32() + h.numel());
}

inline Tensor ints_on_cuda(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty(DType::I32, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.ptr<int32_t>()[i] = v[i];
  return t.to(DType::I32, Device::CUDA);
}

inline std::vector<int32_t> ints(const Tensor& t) {
  Tensor h = t.to(DType::I32, Device::CPU);
  return std::vector<int32_t>(h.ptr<int32_t>(), h.ptr<int32_t>() + h.numel());
}

// A CUDA tensor of `dt` filled with NaN.
inline Tensor poisoned(Shape shape, DType dt) {
  Tensor t = Tensor::empty(DType::F32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  return t.to(dt, Device::CUDA);
}

// A CUDA copy in `dt` of `t` (f32 on the CPU, rows of ld = t.size(1) elements) with columns [c0, c1) set to
// NaN: an output in strided rows whose other columns the op must leave as they are (round `t` to `dt` first,
// so that those columns compare exactly).
inline Tensor poisoned_cols(const Tensor& t, int64_t c0, int64_t c1, DType dt) {
  Tensor h = t.clone();
  const int64_t ld = t.size(1);
  for (int64_t r = 0; r < t.size(0); ++r)
    for (int64_t c = c0; c < c1; ++c) h.f32()[r * ld + c] = std::numeric_limits<float>::quiet_NaN();
  return h.to(dt, Device::CUDA);
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline void expect_all_close(const char* what, const Tensor& got, const std::vector<double>& ref, double atol,
                             double rtol) {
  const std::vector<double> g = doubles(got);
  ASSERT_EQ(g.size(), ref.size()) << what;
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::fabs(g[i] - ref[i]), lim = atol + rtol * std::fabs(ref[i]);
    if (err <= lim) continue;  // NaN fails here
    ++bad;
    const double excess = std::isnan(err) ? INFINITY : err / lim;
    if (worst < 0 || excess > worst_excess) worst = int64_t(i), worst_excess = excess;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements outside atol " << atol
                    << " rtol " << rtol << "; worst at " << worst << ": got "
                    << (worst >= 0 ? g[size_t(worst)] : 0.0) << ", want "
                    << (worst >= 0 ? ref[size_t(worst)] : 0.0);
}

}  // namespace tune::test
