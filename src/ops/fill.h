// Device buffer initialisation on CUDA: seeded normal values (counter-based hash + Box-Muller, so the values
// depend only on (seed, index), not on the launch) and constants. Used to make benchmark models of real
// shapes directly on the GPU.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tune::cuda {

// x[i] = mean + std * N(0, 1) for i < n; dt bf16 or f32.
void fill_normal(void* x, DType dt, int64_t n, uint64_t seed, float mean, float std);
// x[i] = value; dt bf16 or f32.
void fill_constant(void* x, DType dt, int64_t n, float value);

}  // namespace tune::cuda
