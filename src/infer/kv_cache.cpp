// KvCache: per-layer byte buffers of position rows, grown in kKvStep steps.
#include "infer/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"

namespace tune {

KvCache::KvCache(int64_t layers, int64_t kv_dim, int64_t capacity, DType type)
    : layers_(layers),
      kv_dim_(kv_dim),
      capacity_(capacity),
      type_(type),
      k_(size_t(layers)),
      v_(size_t(layers)) {
  TUNE_CHECK(type == DType::F16 || type == DType::F32) << "kv cache type " << dtype_name(type);
  TUNE_CHECK(layers > 0 && kv_dim > 0 && capacity > 0) << "kv cache shape";
}

void KvCache::reserve(int64_t n) {
  if (n <= allocated_) return;
  if (n > capacity_)
    throw ConfigError("the sequence needs " + std::to_string(n) + " positions but the context holds " +
                          std::to_string(capacity_),
                      "shorten the prompt or the answer, or pass a larger --ctx");
  const int64_t grown = std::min(capacity_, (n + kKvStep - 1) / kKvStep * kKvStep);
  for (int64_t l = 0; l < layers_; ++l) {
    k_[size_t(l)].resize(size_t(grown) * row_bytes());
    v_[size_t(l)].resize(size_t(grown) * row_bytes());
  }
  allocated_ = grown;
}

void KvCache::write(int64_t layer, int64_t pos, const float* k, const float* v, int64_t T) {
  TUNE_CHECK(pos + T <= allocated_) << "kv cache write past the reserved rows";
  const int64_t n = T * kv_dim_;
  uint8_t* kd = k_[size_t(layer)].data() + size_t(pos) * row_bytes();
  uint8_t* vd = v_[size_t(layer)].data() + size_t(pos) * row_bytes();
  if (type_ == DType::F32) {
    std::memcpy(kd, k, size_t(n) * 4);
    std::memcpy(vd, v, size_t(n) * 4);
    return;
  }
  auto* kh = reinterpret_cast<uint16_t*>(kd);
  auto* vh = reinterpret_cast<uint16_t*>(vd);
  for (int64_t i = 0; i < n; ++i) {
    kh[i] = f32_to_f16(k[i]);
    vh[i] = f32_to_f16(v[i]);
  }
}

void KvCache::set_size(int64_t n) {
  TUNE_CHECK(n >= 0 && n <= allocated_) << "kv cache size " << n;
  size_ = n;
}

const void* KvCache::k_row(int64_t layer, int64_t pos) const {
  return k_[size_t(layer)].data() + size_t(pos) * row_bytes();
}
const void* KvCache::v_row(int64_t layer, int64_t pos) const {
  return v_[size_t(layer)].data() + size_t(pos) * row_bytes();
}

}  // namespace tune
