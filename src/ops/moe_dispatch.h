// MoE token dispatch and combine for a grouped expert layer: the (T, k) routing's slots i = t k + j sorted by
// expert so each expert's rows are contiguous (one GEMM per expert), token rows gathered into that order, and
// the expert outputs combined back per token with the routing weights; and the backward of each step. The CPU
// MoE layer (model/forward.cpp: moe_fwd, moe_bwd) is the semantics these reproduce; moe_route gives routings.
//   sort:        experts (T, k) i32 -> offsets (E + 1), order (T k), slot_row (T k), all i32
//   gather:      x (T, H), order -> xs (rows, H), xs[row] = x[order[row] / k]
//   combine_fwd: ys (T k, H), slot_row, weights (T, k) -> out (T, H),
//                out[t] = sum_j weights[t, j] ys[slot_row[t k + j]]
//   combine_bwd: dout (T, H) -> dys (T k, H), dweights (T, k), overwritten
//   scatter_add: dxs (T k, H) -> dx (T, H) = sum_j dxs[slot_row[t k + j]] (the gather's backward)
// Expert e owns sorted rows [offsets[e], offsets[e + 1]); order[row] is the slot at that row and slot_row its
// inverse. Within an expert the slots keep increasing order (a stable sort), so every output is
// deterministic. Expert ids outside [0, E) are a caller bug and are not checked.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tune {

namespace cpu {
void moe_sort(const int32_t* experts, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* order,
              int32_t* slot_row);
template <class R>
void moe_gather(const R* x, int64_t T, int64_t H, int64_t k, const int32_t* order, int64_t rows, R* xs);
// out = (accumulate ? out : 0) + the weighted sum, accumulated in double in j order.
template <class R>
void moe_combine_fwd(const R* ys, const int32_t* slot_row, const R* weights, int64_t T, int64_t k, int64_t H,
                     R* out, bool accumulate);
// dys[slot_row[i]] = weights[i] dout[i / k]; dweights[i] = dout[i / k] . ys[slot_row[i]].
template <class R>
void moe_combine_bwd(const R* dout, const R* ys, const int32_t* slot_row, const R* weights, int64_t T,
                     int64_t k, int64_t H, R* dys, R* dweights);
template <class R>
void moe_scatter_add(const R* dxs, const int32_t* slot_row, int64_t T, int64_t k, int64_t H, R* dx,
                     bool accumulate);
}  // namespace cpu

// CUDA kernels (defined when built with TUNE_CUDA): device pointers, activations bf16, weights and dweights
// f32, fp32 arithmetic, sums over j in j order and no atomics in any output, so results do not vary between
// runs. E <= 2048 (kMoeMaxExperts), T k < 2^31. `stream` is a cudaStream_t (null: the default stream).
namespace cuda {
// Counting sort: per-chunk expert counts, their exclusive scan (expert-major), then a stable placement.
// `workspace` holds moe_sort_workspace_bytes(T, k, E) bytes of device scratch (4-byte aligned).
size_t moe_sort_workspace_bytes(int64_t T, int64_t k, int64_t E);
void moe_sort(const int32_t* experts, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* order,
              int32_t* slot_row, void* workspace, void* stream = nullptr);
// rows <= T k (normally equal).
void moe_gather(const void* x, int64_t T, int64_t H, int64_t k, const int32_t* order, int64_t rows, void* xs,
                void* stream = nullptr);
void moe_combine_fwd(const void* ys, const int32_t* slot_row, const float* weights, int64_t T, int64_t k,
                     int64_t H, void* out, bool accumulate, void* stream = nullptr);
void moe_combine_bwd(const void* dout, const void* ys, const int32_t* slot_row, const float* weights,
                     int64_t T, int64_t k, int64_t H, void* dys, float* dweights, void* stream = nullptr);
void moe_scatter_add(const void* dxs, const int32_t* slot_row, int64_t T, int64_t k, int64_t H, void* dx,
                     bool accumulate, void* stream = nullptr);
}  // namespace cuda

}  // namespace tune
