// Gated attention's output gate, elementwise: y = x * sigmoid(g). Every operand is (T, N) with its own row
// stride, so the gate can be read in place from the q projection's [query_h | gate_h] rows (as (T nH, hd)
// with stride 2 hd).
// fwd: x (T, N) stride ldx, g (T, N) stride ldg -> y (T, N) stride ldy; y may alias x (same pointer, stride)
// bwd: dy (T, N) stride ldy -> dx = dy sigmoid(g) (stride lddx), dg = dy x sigmoid(g) (1 - sigmoid(g))
//      (stride lddg), both overwritten; dx may alias dy and dg may alias g (same pointer and stride).
#pragma once

#include <cstdint>

namespace tune {

namespace cpu {
template <class R>
void sigmoid_gate_fwd(const R* x, int64_t ldx, const R* g, int64_t ldg, R* y, int64_t ldy, int64_t T,
                      int64_t N);
template <class R>
void sigmoid_gate_bwd(const R* x, int64_t ldx, const R* g, int64_t ldg, const R* dy, int64_t ldy, R* dx,
                      int64_t lddx, R* dg, int64_t lddg, int64_t T, int64_t N);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA) for the training path: device pointers, all bf16, fp32
// math. `stream` is a cudaStream_t (null: the default stream).
namespace cuda {
void sigmoid_gate_fwd(const void* x, int64_t ldx, const void* g, int64_t ldg, void* y, int64_t ldy, int64_t T,
                      int64_t N, void* stream = nullptr);
void sigmoid_gate_bwd(const void* x, int64_t ldx, const void* g, int64_t ldg, const void* dy, int64_t ldy,
                      void* dx, int64_t lddx, void* dg, int64_t lddg, int64_t T, int64_t N,
                      void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
