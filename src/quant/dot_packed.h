// Weight matrices repacked for the AVX-512 fast path, as ggml's AMX backend keeps a repacked copy of each
// weight: rows in groups of 16, and for every block the 16 rows' values stored so that one 512-bit load holds
// 4 consecutive values of each of the 16 rows (VNNI order), with the rows' block scales side by side. The
// kernels then keep one output row per 32-bit lane: no horizontal sums, and the float steps of all 16 rows
// run as one vector, lane by lane the same IEEE operations as quant/dot_fast.h's standard order, so the
// results are bit-identical to it. Q8_0, Q4_K and Q6_K; built once per matrix by the inference engine when
// the CPU runs AVX-512 (simd_level() == Avx512), into a PackedArena: the kernels stream every matrix each
// token, and on 4 KiB pages that costs a TLB miss every 4 KiB (measured: decode 20-25% slower), so the arena
// is one allocation marked for transparent huge pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/dtype.h"

namespace tune {

// Memory for packed matrices: one allocation, 2 MiB aligned and marked for transparent huge pages (madvise;
// where the kernel has none it is plain memory).
class PackedArena {
 public:
  explicit PackedArena(size_t bytes);
  // The next `bytes` (64-byte aligned); InternalError past the size given.
  uint8_t* take(size_t bytes);

 private:
  std::unique_ptr<uint8_t, void (*)(void*)> data_;
  size_t size_ = 0, used_ = 0;
};

class PackedWeights {
 public:
  static constexpr int64_t kRows = 16;  // rows per group (one per 32-bit lane of a 512-bit register)

  // True when `type` rows of `cols` values have a packed kernel and `rows` is a multiple of kRows.
  static bool supported(DType type, int64_t rows, int64_t cols);
  // Bytes the packed form takes (a multiple of 64).
  static size_t bytes_for(DType type, int64_t rows, int64_t cols);
  // Repacks `rows` rows (`w`, ggml's row layout) of `cols` values into `storage` (bytes_for bytes, 64-byte
  // aligned, e.g. from a PackedArena; it must outlive this object). Threaded over row groups.
  PackedWeights(DType type, const void* w, int64_t rows, int64_t cols, uint8_t* storage);

  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t bytes() const { return bytes_; }

  // y[t * y_stride + r] = w_r · a_t for rows r in [r0, r1) (multiples of kRows) and activation rows t < nact,
  // prepared by vec_dot_fast_prepare (act_row_bytes apart). Needs AVX-512.
  void dot(int64_t r0, int64_t r1, const void* act, size_t act_row_bytes, int64_t nact, float* y,
           int64_t y_stride) const;

 private:
  size_t group_bytes() const;  // bytes of one group of kRows rows

  DType type_;
  int64_t rows_, cols_;
  size_t bytes_ = 0;
  uint8_t* data_;
};

}  // namespace tune
