// Scalar activations in double for the CPU references (sigmoid, SiLU and its derivative, torch's softplus).
#pragma once

#include <cmath>

namespace tune::cpu {

inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
inline double silu(double x) {
  return x * sigmoid(x);
}
// d silu / dx = sigmoid(x) (1 + x (1 - sigmoid(x)))
inline double dsilu(double x) {
  const double s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}
// torch.nn.functional.softplus with its default threshold: x itself above 20.
inline double softplus(double x) {
  return x > 20.0 ? x : std::log1p(std::exp(x));
}

}  // namespace tune::cpu
