// Element type table and 16-bit float conversions.
#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace tune {

namespace {
// Block layouts follow ggml: Q8_0 = f16 scale + 32 int8; Q4_0 = f16 scale + 16 bytes of nibbles; Q4_1 = f16 scale,
// f16 min + nibbles; Q5_0 = f16 scale + 4 bytes of high bits + nibbles; Q5_1 = Q5_0 + f16 min; k-quants are
// super-blocks of 256 elements (layouts in src/quant/k_quants.cpp).
const DTypeInfo kInfo[] = {
    {"f32", 1, 4},      {"f16", 1, 2},      {"bf16", 1, 2},     {"f64", 1, 8},   {"i32", 1, 4},
    {"i64", 1, 8},      {"u8", 1, 1},       {"bool", 1, 1},     {"q8_0", 32, 34}, {"q4_0", 32, 18},
    {"q4_k", 256, 144}, {"q5_k", 256, 176}, {"q6_k", 256, 210}, {"q3_k", 256, 110}, {"q2_k", 256, 84},
    {"q4_1", 32, 20},   {"q5_0", 32, 22},   {"q5_1", 32, 24},
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == size_t(DType::Q5_1) + 1, "one row per DType");
struct StName {
  const char* st;
  DType t;
};
const StName kSafetensorsNames[] = {{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
                                    {"F64", DType::F64}, {"I32", DType::I32}, {"I64", DType::I64},
                                    {"U8", DType::U8},   {"BOOL", DType::BOOL}};
}  // namespace

const DTypeInfo& dtype_info(DType t) { return kInfo[static_cast<int>(t)]; }

size_t dtype_bytes(DType t, int64_t n) {
  const DTypeInfo& i = dtype_info(t);
  TUNE_CHECK(n % i.block_size == 0) << n << " elements is not a whole number of " << i.name << " blocks";
  return size_t(n / i.block_size) * i.type_size;
}

bool dtype_from_safetensors(std::string_view s, DType* out) {
  for (const StName& n : kSafetensorsNames) {
    if (s == n.st) {
      *out = n.t;
      return true;
    }
  }
  return false;
}

const char* dtype_to_safetensors(DType t) {
  for (const StName& n : kSafetensorsNames) {
    if (n.t == t) return n.st;
  }
  throw UnsupportedError(std::string("dtype ") + dtype_name(t) + " cannot be stored in safetensors",
                         "use f32, f16 or bf16");
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(float(mant), -24);  // zero or subnormal
    return sign ? -f : f;
  }
  uint32_t u;
  if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else {
    u = sign | (uint32_t(exp - 15 + 127) << 23) | (mant << 13);
  }
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;        // nan
  if (abs >= 0x477ff000u) return sign | 0x7c00u;       // overflow (>= 65520 rounds to inf)
  if (abs < 0x38800000u) {                             // below the smallest normal f16: subnormal or zero
    const float a = std::fabs(f);
    return sign | uint16_t(std::nearbyint(a * 16777216.0f));  // units of 2^-24, round to nearest even
  }
  // normal: rebias exponent, round mantissa to 10 bits (nearest even)
  uint32_t v = abs - (uint32_t(127 - 15) << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return sign | uint16_t(v >> 13);
}

}  // namespace tune
