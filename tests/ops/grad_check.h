// Gradient checks in double: the analytic backward of an op against central differences of the scalar
// L = sum(G * y) for a fixed random G, element by element of every input.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/rng.h"

namespace tune::test {

inline std::vector<double> randv(size_t n, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = shift + scale * rng.normal();
  return v;
}

inline double weighted_sum(const std::vector<double>& y, const std::vector<double>& g) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * g[i];
  return s;
}

// Checks analytic[i] == dL/dx[i] by central differences, perturbing x in place. |a - n| <= tol * (1 + |n|):
// the step is relative to x (h = 1e-5 max(|x|, 0.01)), so truncation (~(h/x)^2) and rounding (~1e-16/h) errors
// stay far below 1e-7 for inputs from 1e-2 to 1e2.
inline void expect_grad(const char* what, std::vector<double>& x, const std::vector<double>& analytic,
                        const std::function<double()>& loss, double tol = 1e-7) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i], h = 1e-5 * std::max(std::fabs(x0), 0.01);
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    const double num = (lp - lm) / (2 * h);
    ASSERT_LE(std::fabs(analytic[i] - num), tol * (1 + std::fabs(num)))
        << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << num;
  }
}

}  // namespace tune::test
