// Gated DeltaNet's output norm, per value head: RMSNorm with a plain (not zero-centred) weight, times
// silu(z):
//   y[t,h,:] = w * o[t,h,:] * r * silu(z[t,h,:]),  r = 1 / sqrt(mean(o[t,h,:]^2) + eps)
// fwd: o (T, nV*dv) contiguous, z rows (T) of ldz elements (first nV*dv used), w (dv) -> y (T, nV*dv)
//      contiguous
// bwd: dy (T, nV*dv) -> d_o (T, nV*dv) contiguous and dz (rows of ldz, first nV*dv columns), both
//      overwritten: n = dy w silu(z), d_o = r n - o r^3 / dv sum(n o), dz = dy w o r silu'(z).
//      w is frozen: no gradient.
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
template <class R>
void gated_rmsnorm_fwd(const R* o, const R* z, int64_t ldz, const R* w, R eps, R* y, int64_t T, int64_t nV,
                       int64_t dv);
template <class R>
void gated_rmsnorm_bwd(const R* o, const R* z, int64_t ldz, const R* w, R eps, const R* dy, R* d_o, R* dz,
                       int64_t T, int64_t nV, int64_t dv);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA) for the training path: device pointers; o, z, y, dy, d_o,
// dz bf16, w f32; fp32 math; dv <= 256; outputs must not alias inputs. `stream` is a cudaStream_t (null: the
// default stream).
namespace cuda {
void gated_rmsnorm_fwd(const void* o, const void* z, int64_t ldz, const float* w, float eps, void* y,
                       int64_t T, int64_t nV, int64_t dv, void* stream = nullptr);
void gated_rmsnorm_bwd(const void* o, const void* z, int64_t ldz, const float* w, float eps, const void* dy,
                       void* d_o, void* dz, int64_t T, int64_t nV, int64_t dv, void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
