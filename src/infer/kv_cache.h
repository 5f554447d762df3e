// The key/value cache of one sequence: for every attention layer, the keys (after QK-norm and RoPE) and the
// values of each position seen so far, one row of nKV*hd values per position, as llama.cpp keeps them with
// flash attention (values not transposed). Stored in f16 by default (llama.cpp's default: half the memory and
// bandwidth of f32; rounding to nearest even) or in f32. Storage grows in steps of kKvStep positions up to a
// fixed capacity.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace tune {

class KvCache {
 public:
  static constexpr int64_t kKvStep = 256;

  // `layers` layers of `kv_dim` (= nKV*hd) values per position, at most `capacity` positions; `type` F16 or
  // F32.
  KvCache(int64_t layers, int64_t kv_dim, int64_t capacity, DType type);

  DType type() const { return type_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t capacity() const { return capacity_; }
  // Positions filled: [0, size()).
  int64_t size() const { return size_; }

  // Makes room for positions [0, n). ConfigError when n exceeds the capacity.
  void reserve(int64_t n);
  // Converts k, v (T, kv_dim) f32 to the cache type and stores them at positions [pos, pos + T) of `layer`.
  // The caller sets the size once every layer is written.
  void write(int64_t layer, int64_t pos, const float* k, const float* v, int64_t T);
  void set_size(int64_t n);

  // Row of position `pos` in `layer`: kv_dim values of the cache type.
  const void* k_row(int64_t layer, int64_t pos) const;
  const void* v_row(int64_t layer, int64_t pos) const;
  size_t row_bytes() const { return size_t(kv_dim_) * (type_ == DType::F16 ? 2 : 4); }

 private:
  int64_t layers_, kv_dim_, capacity_;
  DType type_;
  int64_t allocated_ = 0, size_ = 0;
  std::vector<std::vector<uint8_t>> k_, v_;  // per layer: allocated_ rows
};

}  // namespace tune
