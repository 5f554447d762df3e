// Element types. Plain types (f32, bf16, f16, i32, i64, u8) have a block size of 1; quantized block types
// (ggml's Q8_0, k-quants) pack `block_size` elements into `type_size` bytes. Conversions for 16-bit floats.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tune {

// Q4_1/Q5_0/Q5_1 are the 32-element fallbacks llama.cpp's file-type mixes use where a row is not a multiple of 256.
enum class DType : uint8_t {
  F32, F16, BF16, F64, I32, I64, U8, BOOL, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q3_K, Q2_K, Q4_1, Q5_0, Q5_1
};

struct DTypeInfo {
  const char* name;      // tune's name, lower case ("f32", "q4_k")
  int64_t block_size;    // elements per block
  size_t type_size;      // bytes per block
};

const DTypeInfo& dtype_info(DType t);
inline const char* dtype_name(DType t) { return dtype_info(t).name; }
inline bool dtype_is_quantized(DType t) { return dtype_info(t).block_size > 1; }
// Bytes for n elements; n must be a multiple of the block size.
size_t dtype_bytes(DType t, int64_t n);

// safetensors dtype strings ("F32", "BF16", ...); false if the string names no supported type.
bool dtype_from_safetensors(std::string_view s, DType* out);
const char* dtype_to_safetensors(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace tune
