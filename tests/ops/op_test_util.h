// Helpers for op tests: seeded random tensors and a relative-error comparison |a-b| <= atol + rtol*|ref|.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace tune::test {

inline Tensor randn(Shape shape, uint64_t seed, float scale = 1.0f, float shift = 0.0f) {
  Tensor t = Tensor::empty(DType::F32, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = shift + scale * rng.normal();
  return t;
}

inline void expect_close(const float* got, const std::vector<double>& ref, double atol, double rtol) {
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_LE(std::fabs(double(got[i]) - ref[i]), atol + rtol * std::fabs(ref[i])) << "at index " << i;
  }
}

}  // namespace tune::test
