// GGUF reader (mmap + a bounds-checked cursor: no count, length or offset from the file is trusted before it
// is checked against the bytes that remain) and writer (header built in memory, tensors streamed, temp file +
// rename).
#include "io/gguf.h"

#include "io/mapped_file.h"


#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

namespace tune {

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace {

constexpr uint32_t kMaxDimsGguf = 4;  // GGML_MAX_DIMS
constexpr size_t kMaxNameBytes = 63;  // GGML_MAX_NAME = 64 including the NUL
constexpr int kMaxArrayDepth = 16;    // nested arrays deeper than this are refused (stack safety)
constexpr uint64_t kDefaultAlignment = 32;
const char* kCorruptHint = "the file is truncated or corrupt; copy or convert it again";

// ggml_type table, from ggml's type traits (ggml 0.25): {id, name, block size, block bytes}. Ids 4, 5, 31-33
// and 36-38 were removed from ggml and are rejected.
const GgmlTypeInfo kGgmlTypes[] = {
    {0, "f32", 1, 4},         {1, "f16", 1, 2},         {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},      {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},    {11, "q3_K", 256, 110},   {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},   {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},   {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},        {27, "i64", 1, 8},        {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},   {35, "tq2_0", 256, 66},   {39, "mxfp4", 32, 17},
    {40, "nvfp4", 64, 36},    {41, "q1_0", 128, 18},    {42, "q2_0", 64, 18},
};

struct DTypeGgml {
  DType dtype;
  uint32_t id;
};
const DTypeGgml kDTypeGgml[] = {
    {DType::F32, 0},   {DType::F16, 1},   {DType::Q4_0, 2},  {DType::Q4_1, 3},
    {DType::Q5_0, 6},  {DType::Q5_1, 7},  {DType::Q8_0, 8},  {DType::Q2_K, 10},
    {DType::Q3_K, 11}, {DType::Q4_K, 12}, {DType::Q5_K, 13}, {DType::Q6_K, 14},
    {DType::I32, 26},  {DType::I64, 27},  {DType::F64, 28},  {DType::BF16, 30},
};

// Bytes of one scalar of a value type; 0 for STRING and ARRAY.
size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}
bool valid_type(uint32_t t) {
  return t <= uint32_t(GgufType::FLOAT64);
}
bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64:
      return true;
    default:
      return false;
  }
}
bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}
// Range of an integer type as [lo, hi] in int64 (uint64's upper half is handled by the callers).
void int_range(GgufType t, int64_t* lo, int64_t* hi) {
  const size_t bits = scalar_size(t) * 8;
  if (is_signed(t)) {
    *hi = bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t(1) << (bits - 1)) - 1;
    *lo = -*hi - 1;
  } else {
    *lo = 0;
    *hi = bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t(1) << bits) - 1;
  }
}
// Decodes an integer of type t from its little-endian bits (sign-extending signed types).
int64_t decode_int(GgufType t, uint64_t bits) {
  switch (t) {
    case GgufType::INT8:
      return int8_t(uint8_t(bits));
    case GgufType::INT16:
      return int16_t(uint16_t(bits));
    case GgufType::INT32:
      return int32_t(uint32_t(bits));
    case GgufType::INT64:
      return int64_t(bits);
    default:
      return int64_t(bits);
  }
}
uint64_t load_bits(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}
double decode_float(GgufType t, uint64_t bits) {
  if (t == GgufType::FLOAT32) {
    float f;
    const uint32_t u = uint32_t(bits);
    std::memcpy(&f, &u, 4);
    return f;
  }
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

[[noreturn]] void type_error(const GgufValue& v, const char* wanted) {
  throw FormatError("value is " + v.type_str() + ", not " + wanted);
}


// Reads little-endian fields from the mapped bytes; every read is checked against the end of the file.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size) : path_(path), data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw FormatError(path_ + ": " + what + " (at byte " + std::to_string(at) + ")", kCorruptHint);
  }
  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
               std::to_string(remaining()) + " remain",
           pos_);
    }
  }
  const uint8_t* take(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += size_t(n);
    return p;
  }
  uint32_t u32(const char* what) { return uint32_t(load_bits(take(4, what), 4)); }
  uint64_t u64(const char* what) { return load_bits(take(8, what), 8); }
  int64_t i64(const char* what) { return int64_t(u64(what)); }
  std::string str(const char* what) {
    const size_t at = pos_;
    const uint64_t n = u64(what);
    if (n > remaining()) {
      fail(std::string(what) + " has length " + std::to_string(n) + " but only " +
               std::to_string(remaining()) + " bytes remain",
           at);
    }
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), size_t(n));
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Smallest encoding of one element of an array of `t` (to bound counts before allocating).
uint64_t min_elem_bytes(GgufType t) {
  if (t == GgufType::STRING) return 8;
  if (t == GgufType::ARRAY) return 12;
  return scalar_size(t);
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
      return "uint8";
    case GgufType::INT8:
      return "int8";
    case GgufType::UINT16:
      return "uint16";
    case GgufType::INT16:
      return "int16";
    case GgufType::UINT32:
      return "uint32";
    case GgufType::INT32:
      return "int32";
    case GgufType::FLOAT32:
      return "float32";
    case GgufType::BOOL:
      return "bool";
    case GgufType::STRING:
      return "string";
    case GgufType::ARRAY:
      return "array";
    case GgufType::UINT64:
      return "uint64";
    case GgufType::INT64:
      return "int64";
    case GgufType::FLOAT64:
      return "float64";
  }
  return "unknown";
}

// ------------------------------------------------------------------------------------------------ GgufValue

#define TUNE_GGUF_SCALAR(NAME, CTYPE, TYPE, BITS) \
  GgufValue GgufValue::NAME(CTYPE v) {            \
    GgufValue r;                                  \
    r.type_ = GgufType::TYPE;                     \
    r.bits_ = (BITS);                             \
    return r;                                     \
  }
TUNE_GGUF_SCALAR(u8, uint8_t, UINT8, v)
TUNE_GGUF_SCALAR(i8, int8_t, INT8, uint8_t(v))
TUNE_GGUF_SCALAR(u16, uint16_t, UINT16, v)
TUNE_GGUF_SCALAR(i16, int16_t, INT16, uint16_t(v))
TUNE_GGUF_SCALAR(u32, uint32_t, UINT32, v)
TUNE_GGUF_SCALAR(i32, int32_t, INT32, uint32_t(v))
TUNE_GGUF_SCALAR(f32, float, FLOAT32, std::bit_cast<uint32_t>(v))
TUNE_GGUF_SCALAR(boolean, bool, BOOL, v ? 1u : 0u)
TUNE_GGUF_SCALAR(u64, uint64_t, UINT64, v)
TUNE_GGUF_SCALAR(i64, int64_t, INT64, uint64_t(v))
TUNE_GGUF_SCALAR(f64, double, FLOAT64, std::bit_cast<uint64_t>(v))
#undef TUNE_GGUF_SCALAR

GgufValue GgufValue::string(std::string v) {
  GgufValue r;
  r.type_ = GgufType::STRING;
  r.str_ = std::move(v);
  return r;
}

GgufValue GgufValue::strings(std::vector<std::string> v) {
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = GgufType::STRING;
  r.strs_ = std::move(v);
  return r;
}

GgufValue GgufValue::ints(GgufType elem, const std::vector<int64_t>& v) {
  if (!is_integer(elem)) throw ConfigError(std::string("GGUF integer array of ") + gguf_type_name(elem));
  int64_t lo, hi;
  int_range(elem, &lo, &hi);
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = elem;
  const size_t es = scalar_size(elem);
  r.raw_.resize(v.size() * es);
  for (size_t i = 0; i < v.size(); ++i) {
    const bool fits = elem == GgufType::UINT64 ? v[i] >= 0 : (v[i] >= lo && v[i] <= hi);
    if (!fits) {
      throw ConfigError("GGUF " + std::string(gguf_type_name(elem)) + " array: element " + std::to_string(i) +
                        " = " + std::to_string(v[i]) + " is out of range");
    }
    const uint64_t bits = uint64_t(v[i]);
    std::memcpy(r.raw_.data() + i * es, &bits, es);
  }
  return r;
}

GgufValue GgufValue::floats(GgufType elem, const std::vector<double>& v) {
  if (elem != GgufType::FLOAT32 && elem != GgufType::FLOAT64)
    throw ConfigError(std::string("GGUF float array of ") + gguf_type_name(elem));
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = elem;
  const size_t es = scalar_size(elem);
  r.raw_.resize(v.size() * es);
  for (size_t i = 0; i < v.size(); ++i) {
    if (elem == GgufType::FLOAT32) {
      const float f = float(v[i]);
      std::memcpy(r.raw_.data() + i * 4, &f, 4);
    } else {
      std::memcpy(r.raw_.data() + i * 8, &v[i], 8);
    }
  }
  return r;
}

GgufValue GgufValue::bools(const std::vector<bool>& v) {
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = GgufType::BOOL;
  r.raw_.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) r.raw_[i] = v[i] ? 1 : 0;
  return r;
}

GgufValue GgufValue::arrays(std::vector<GgufValue> v) {
  for (const GgufValue& e : v) {
    if (!e.is_array()) throw ConfigError("GGUF array of arrays: an element is a " + e.type_str());
  }
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = GgufType::ARRAY;
  r.vals_ = std::move(v);
  return r;
}

GgufValue GgufValue::empty_array(GgufType elem) {
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = elem;
  return r;
}

std::string GgufValue::type_str() const {
  if (!is_array()) return gguf_type_name(type_);
  if (elem_ == GgufType::ARRAY) {
    return "array[" + (vals_.empty() ? std::string("array") : vals_.front().type_str()) + "]";
  }
  return std::string("array[") + gguf_type_name(elem_) + "]";
}

uint32_t GgufValue::as_u32() const {
  if (type_ != GgufType::UINT32) type_error(*this, "uint32");
  return uint32_t(bits_);
}
float GgufValue::as_f32() const {
  if (type_ != GgufType::FLOAT32) type_error(*this, "float32");
  return float(decode_float(type_, bits_));
}
bool GgufValue::as_bool() const {
  if (type_ != GgufType::BOOL) type_error(*this, "bool");
  return bits_ != 0;
}
const std::string& GgufValue::as_string() const {
  if (type_ != GgufType::STRING) type_error(*this, "string");
  return str_;
}
int64_t GgufValue::as_int() const {
  if (!is_integer(type_)) type_error(*this, "an integer");
  if (type_ == GgufType::UINT64 && bits_ > uint64_t(std::numeric_limits<int64_t>::max()))
    throw FormatError("uint64 value " + std::to_string(bits_) + " is too large");
  return decode_int(type_, bits_);
}
double GgufValue::as_float() const {
  if (type_ != GgufType::FLOAT32 && type_ != GgufType::FLOAT64) type_error(*this, "a float");
  return decode_float(type_, bits_);
}

GgufType GgufValue::elem_type() const {
  if (!is_array()) type_error(*this, "an array");
  return elem_;
}
size_t GgufValue::size() const {
  if (!is_array()) type_error(*this, "an array");
  if (elem_ == GgufType::STRING) return strs_.size();
  if (elem_ == GgufType::ARRAY) return vals_.size();
  return raw_.size() / scalar_size(elem_);
}
const std::vector<std::string>& GgufValue::as_strings() const {
  if (!is_array() || elem_ != GgufType::STRING) type_error(*this, "array[string]");
  return strs_;
}
std::vector<int64_t> GgufValue::as_ints() const {
  if (!is_array() || !is_integer(elem_)) type_error(*this, "an integer array");
  const size_t es = scalar_size(elem_), n = raw_.size() / es;
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t bits = load_bits(raw_.data() + i * es, es);
    if (elem_ == GgufType::UINT64 && bits > uint64_t(std::numeric_limits<int64_t>::max()))
      throw FormatError("uint64 element " + std::to_string(i) + " is too large");
    out[i] = decode_int(elem_, bits);
  }
  return out;
}
std::vector<double> GgufValue::as_floats() const {
  if (!is_array() || (elem_ != GgufType::FLOAT32 && elem_ != GgufType::FLOAT64))
    type_error(*this, "a float array");
  const size_t es = scalar_size(elem_), n = raw_.size() / es;
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = decode_float(elem_, load_bits(raw_.data() + i * es, es));
  return out;
}
const std::vector<GgufValue>& GgufValue::as_arrays() const {
  if (!is_array() || elem_ != GgufType::ARRAY) type_error(*this, "array[array]");
  return vals_;
}
GgufValue GgufValue::at(size_t i) const {
  if (i >= size())
    throw FormatError("array index " + std::to_string(i) + " out of range " + std::to_string(size()));
  if (elem_ == GgufType::STRING) return string(strs_[i]);
  if (elem_ == GgufType::ARRAY) return vals_[i];
  GgufValue r;
  r.type_ = elem_;
  const size_t es = scalar_size(elem_);
  r.bits_ = load_bits(raw_.data() + i * es, es);
  return r;
}

bool GgufValue::operator==(const GgufValue& o) const {
  return type_ == o.type_ && bits_ == o.bits_ && str_ == o.str_ && (!is_array() || elem_ == o.elem_) &&
         raw_ == o.raw_ && strs_ == o.strs_ && vals_ == o.vals_;
}

// ------------------------------------------------------------------------------------------------ ggml types

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

uint32_t ggml_type_of(DType t) {
  for (const DTypeGgml& m : kDTypeGgml)
    if (m.dtype == t) return m.id;
  throw UnsupportedError(std::string("dtype ") + dtype_name(t) + " cannot be stored in GGUF",
                         "convert it to f32, f16, bf16, i32 or a quantized type");
}

bool dtype_of_ggml_type(uint32_t id, DType* out) {
  for (const DTypeGgml& m : kDTypeGgml) {
    if (m.id == id) {
      *out = m.dtype;
      return true;
    }
  }
  return false;
}

// ------------------------------------------------------------------------------------------------ codec

// Value encoding and decoding (a friend of GgufValue).
struct GgufCodec {
  static GgufValue read_value(Cursor& c, GgufType t, int depth) {
    if (t == GgufType::STRING) return GgufValue::string(c.str("string value"));
    if (t == GgufType::ARRAY) return read_array(c, depth);
    GgufValue v;
    v.type_ = t;
    v.bits_ = load_bits(c.take(scalar_size(t), "value"), scalar_size(t));
    return v;
  }

  // Array body: element type, count, elements.
  static GgufValue read_array(Cursor& c, int depth) {
    const size_t at = c.pos();
    if (depth >= kMaxArrayDepth) c.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth), at);
    const uint32_t et = c.u32("array element type");
    if (!valid_type(et)) c.fail("unknown array element type " + std::to_string(et), at);
    GgufValue v = GgufValue::empty_array(GgufType(et));
    const uint64_t n = c.u64("array length");
    if (n > c.remaining() / min_elem_bytes(v.elem_)) {
      c.fail("array of " + std::to_string(n) + " " + gguf_type_name(v.elem_) +
                 " elements does not fit in the " + std::to_string(c.remaining()) + " bytes that remain",
             at);
    }
    if (v.elem_ == GgufType::STRING) {
      for (uint64_t i = 0; i < n; ++i) v.strs_.push_back(c.str("array string"));
    } else if (v.elem_ == GgufType::ARRAY) {
      for (uint64_t i = 0; i < n; ++i) v.vals_.push_back(read_array(c, depth + 1));
    } else {
      const uint64_t bytes = n * scalar_size(v.elem_);
      const uint8_t* p = c.take(bytes, "array data");
      v.raw_.assign(p, p + bytes);
    }
    return v;
  }

  static void put(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
  static void put_u32(std::string& out, uint32_t v) { put(out, &v, 4); }
  static void put_u64(std::string& out, uint64_t v) { put(out, &v, 8); }
  static void put_str(std::string& out, const std::string& s) {
    put_u64(out, s.size());
    out += s;
  }
  static void put_array_body(std::string& out, const GgufValue& v) {
    put_u32(out, uint32_t(v.elem_));
    put_u64(out, v.size());
    if (v.elem_ == GgufType::STRING) {
      for (const std::string& s : v.strs_) put_str(out, s);
    } else if (v.elem_ == GgufType::ARRAY) {
      for (const GgufValue& e : v.vals_) put_array_body(out, e);
    } else {
      put(out, v.raw_.data(), v.raw_.size());
    }
  }
  static void put_value(std::string& out, const GgufValue& v) {
    put_u32(out, uint32_t(v.type_));
    if (v.type_ == GgufType::STRING) {
      put_str(out, v.str_);
    } else if (v.type_ == GgufType::ARRAY) {
      put_array_body(out, v);
    } else {
      put(out, &v.bits_, scalar_size(v.type_));
    }
  }
};

// ------------------------------------------------------------------------------------------------ reader

GgufFile::GgufFile(const std::string& path) : path_(path) {
  mapping_ = map_file(path, &size_);
  const auto* base = static_cast<const uint8_t*>(mapping_.get());
  if (size_ < 24) {
    throw FormatError(
        path + ": file is " + std::to_string(size_) + " bytes, too short for a GGUF header (24 bytes)",
        kCorruptHint);
  }
  if (std::memcmp(base, "GGUF", 4) != 0) {
    char got[32];
    std::snprintf(got, sizeof(got), "%02x %02x %02x %02x", base[0], base[1], base[2], base[3]);
    throw FormatError(path + ": not a GGUF file (it starts with bytes " + got + ", not \"GGUF\")",
                      "pass a .gguf file made by llama.cpp or tune");
  }
  Cursor c(path_, base, size_);
  c.take(4, "magic");
  version_ = c.u32("version");
  if (version_ != 0 && (version_ & 0xFFFFu) == 0) {
    throw FormatError(path + ": GGUF version field " + std::to_string(version_) +
                          " is byte-swapped: the file is big-endian",
                      "tune reads little-endian GGUF files; convert the model on a little-endian machine");
  }
  if (version_ == 1) {
    throw FormatError(path + ": GGUF version 1 is no longer supported (tune reads versions 2 and 3)",
                      "convert the model again with a current llama.cpp");
  }
  if (version_ < 2 || version_ > 3) {
    throw FormatError(
        path + ": unknown GGUF version " + std::to_string(version_) + " (tune reads versions 2 and 3)",
        kCorruptHint);
  }
  const int64_t n_tensors = c.i64("tensor count");
  const int64_t n_kv = c.i64("metadata count");
  // Each key/value pair takes at least 13 bytes (length, type, a 1-byte value) and each tensor info at
  // least 24.
  if (n_tensors < 0 || uint64_t(n_tensors) > c.remaining() / 24)
    c.fail("tensor count " + std::to_string(n_tensors) + " does not fit in the file", 8);
  if (n_kv < 0 || uint64_t(n_kv) > c.remaining() / 13)
    c.fail("metadata count " + std::to_string(n_kv) + " does not fit in the file", 16);

  for (int64_t i = 0; i < n_kv; ++i) {
    const size_t at = c.pos();
    std::string key = c.str("metadata key");
    if (key.empty()) c.fail("metadata key " + std::to_string(i) + " is empty", at);
    if (kv_index_.count(key)) c.fail("duplicate metadata key '" + key + "'", at);
    const uint32_t t = c.u32("value type");
    if (!valid_type(t)) c.fail("metadata key '" + key + "' has unknown value type " + std::to_string(t), at);
    GgufValue v = GgufCodec::read_value(c, GgufType(t), 0);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type() != GgufType::UINT32) c.fail("general.alignment is " + a->type_str() + ", not uint32", 0);
    alignment_ = a->as_u32();
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
      c.fail("general.alignment = " + std::to_string(alignment_) + " is not a power of two", 0);
  }

  std::vector<size_t> info_at;
  for (int64_t i = 0; i < n_tensors; ++i) {
    const size_t at = c.pos();
    info_at.push_back(at);
    GgufTensorInfo info;
    info.name = c.str("tensor name");
    if (info.name.empty()) c.fail("tensor " + std::to_string(i) + " has an empty name", at);
    if (info.name.size() > kMaxNameBytes) {
      c.fail("tensor name '" + info.name.substr(0, 80) + "' is " + std::to_string(info.name.size()) +
                 " bytes (ggml's limit is 63)",
             at);
    }
    if (tensor_index_.count(info.name)) c.fail("duplicate tensor name '" + info.name + "'", at);
    const std::string where = "tensor '" + info.name + "'";
    const uint32_t n_dims = c.u32("tensor dimension count");
    if (n_dims > kMaxDimsGguf)
      c.fail(where + " has " + std::to_string(n_dims) + " dimensions (GGUF allows at most 4)", at);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = c.i64("tensor dimension");
      if (ne < 0) c.fail(where + " has a negative dimension " + std::to_string(ne), at);
      if (__builtin_mul_overflow(numel, ne, &numel)) c.fail(where + " has too many elements", at);
      info.ne.push_back(ne);
    }
    info.ggml_type = c.u32("tensor type");
    const GgmlTypeInfo* gt = ggml_type_info(info.ggml_type);
    if (!gt) c.fail(where + " has unknown ggml type id " + std::to_string(info.ggml_type), at);
    const int64_t ne0 = info.ne.empty() ? 1 : info.ne[0];
    if (ne0 % gt->block_size != 0) {
      c.fail(where + ": rows of " + std::to_string(ne0) + " elements are not a whole number of " + gt->name +
                 " blocks (" + std::to_string(gt->block_size) + ")",
             at);
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(uint64_t(numel / gt->block_size), uint64_t(gt->type_size), &nbytes) ||
        nbytes > size_) {
      c.fail(where + " needs more bytes than the file has", at);
    }
    info.nbytes = size_t(nbytes);
    info.offset = c.u64("tensor data offset");
    info.shape = Shape::of(std::vector<int64_t>(info.ne.rbegin(), info.ne.rend()));
    info.has_dtype = dtype_of_ggml_type(info.ggml_type, &info.dtype);
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment (ggml pads even when there are no tensors,
  // but files without tensors may end right after the header).
  const uint64_t end = c.pos();
  data_offset_ = (end + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size_) {
    throw FormatError(path + ": truncated: the tensor data would start at byte " +
                          std::to_string(data_offset_) + ", past the end of the file (" +
                          std::to_string(size_) + " bytes)",
                      kCorruptHint);
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorInfo& t = tensors_[i];
    if (t.offset % alignment_ != 0) {
      c.fail("tensor '" + t.name + "' data offset " + std::to_string(t.offset) +
                 " is not a multiple of the alignment " + std::to_string(alignment_),
             info_at[i]);
    }
    const uint64_t avail = size_ - data_offset_;
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      throw FormatError(path + ": tensor '" + t.name + "' data [" + std::to_string(t.offset) + ", " +
                            std::to_string(t.offset + t.nbytes) + ") lies outside the data section of " +
                            std::to_string(avail) + " bytes (truncated file?)",
                        kCorruptHint);
    }
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v)
    throw FormatError(path_ + ": metadata key '" + key + "' is missing",
                      "is this GGUF from another model type?");
  return *v;
}

namespace {
template <class F>
auto typed_get(const std::string& path, const std::string& key, const GgufValue& v, F f) {
  try {
    return f(v);
  } catch (const FormatError& e) {
    throw FormatError(path + ": metadata key '" + key + "': " + e.message());
  }
}
}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  return typed_get(path_, key, get(key), [](const GgufValue& v) { return v.as_string(); });
}
int64_t GgufFile::get_int(const std::string& key) const {
  return typed_get(path_, key, get(key), [](const GgufValue& v) { return v.as_int(); });
}
double GgufFile::get_float(const std::string& key) const {
  return typed_get(path_, key, get(key), [](const GgufValue& v) { return v.as_float(); });
}
bool GgufFile::get_bool(const std::string& key) const {
  return typed_get(path_, key, get(key), [](const GgufValue& v) { return v.as_bool(); });
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const void* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  return static_cast<const uint8_t*>(mapping_.get()) + data_offset_ + info.offset;
}

Tensor GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* info = find_tensor(name);
  if (!info)
    throw FormatError(path_ + ": tensor '" + name + "' is missing", "is this GGUF from another model?");
  if (!info->has_dtype) {
    throw UnsupportedError(
        path_ + ": tensor '" + name + "' has ggml type " + ggml_type_info(info->ggml_type)->name +
            ", which tune cannot read",
        "tune reads f32, f16, bf16, f64, i32, i64, q8_0, q4_0, q4_1, q5_0, q5_1 and q2_K..q6_K");
  }
  return Tensor::wrap(const_cast<void*>(tensor_data(*info)), info->dtype, info->shape, mapping_);
}

// ------------------------------------------------------------------------------------------------ writer

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (key.empty()) throw ConfigError("GGUF metadata keys must not be empty");
  if (key == "general.alignment") {
    if (value.type() != GgufType::UINT32)
      throw ConfigError("general.alignment must be a uint32, got " + value.type_str());
    const uint32_t a = value.as_u32();
    if (a == 0 || (a & (a - 1)) != 0)
      throw ConfigError("general.alignment = " + std::to_string(a) + " is not a power of two");
  }
  auto it = kv_index_.find(key);
  if (it != kv_index_.end()) {
    kv_[it->second].second = std::move(value);
  } else {
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(key, std::move(value));
  }
}

const GgufValue* GgufWriter::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

uint64_t GgufWriter::alignment() const {
  const GgufValue* a = find("general.alignment");
  return a ? a->as_u32() : kDefaultAlignment;
}

void GgufWriter::add_pending(Pending p) {
  const std::string where = "GGUF tensor '" + p.name + "'";
  if (p.name.empty()) throw ConfigError("GGUF tensor names must not be empty");
  if (p.name.size() > kMaxNameBytes)
    throw ConfigError(where + ": the name is " + std::to_string(p.name.size()) +
                      " bytes (ggml's limit is 63)");
  if (tensor_index_.count(p.name)) throw ConfigError(where + " was added twice");
  if (p.shape.ndim > int(kMaxDimsGguf)) {
    throw UnsupportedError(
        where + " has " + std::to_string(p.shape.ndim) + " dimensions (GGUF allows at most 4)",
        "reshape it before export");
  }
  for (int d = 0; d < p.shape.ndim; ++d)
    TUNE_CHECK(p.shape[d] >= 0) << where << " has shape " << p.shape.str();
  ggml_type_of(p.dtype);  // UnsupportedError for types GGUF cannot hold
  const int64_t row = p.shape.ndim > 0 ? p.shape[-1] : 1;
  const DTypeInfo& di = dtype_info(p.dtype);
  if (row % di.block_size != 0) {
    throw ConfigError(where + ": rows of " + std::to_string(row) + " elements are not a whole number of " +
                          di.name + " blocks (" + std::to_string(di.block_size) + ")",
                      "pick a type whose block size divides the row");
  }
  p.nbytes = dtype_bytes(p.dtype, p.shape.numel());
  tensor_index_.emplace(p.name, tensors_.size());
  tensors_.push_back(std::move(p));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const Shape& shape, const void* data) {
  Pending p;
  p.name = name;
  p.dtype = dtype;
  p.shape = shape;
  p.data = data;
  add_pending(std::move(p));
}

void GgufWriter::add_tensor(const std::string& name, const Tensor& t) {
  TUNE_CHECK(t.view().is_contiguous()) << "GGUF tensor " << name << " is not contiguous";
  Pending p;
  p.name = name;
  p.dtype = t.dtype();
  p.shape = t.shape();
  p.keep = t;
  add_pending(std::move(p));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const Shape& shape,
                            std::function<void(void* dst)> fill) {
  Pending p;
  p.name = name;
  p.dtype = dtype;
  p.shape = shape;
  p.fill = std::move(fill);
  add_pending(std::move(p));
}

namespace {
// Removes the temporary file unless released (on any error path, including exceptions from fill callbacks).
struct TempFile {
  std::string path;
  FILE* f = nullptr;
  bool keep = false;
  ~TempFile() {
    if (f) std::fclose(f);
    if (!keep) std::remove(path.c_str());
  }
};
}  // namespace

void GgufWriter::write(const std::string& path) const {
  const uint64_t align = alignment();
  auto padded = [align](uint64_t n) { return (n + align - 1) / align * align; };

  std::string head;
  GgufCodec::put(head, "GGUF", 4);
  GgufCodec::put_u32(head, 3);
  GgufCodec::put_u64(head, tensors_.size());
  GgufCodec::put_u64(head, kv_.size());
  for (const auto& [key, value] : kv_) {
    GgufCodec::put_str(head, key);
    GgufCodec::put_value(head, value);
  }
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    GgufCodec::put_str(head, t.name);
    if (t.shape.ndim == 0) {  // a scalar is one element of one dimension
      GgufCodec::put_u32(head, 1);
      GgufCodec::put_u64(head, 1);
    } else {
      GgufCodec::put_u32(head, uint32_t(t.shape.ndim));
      for (int d = t.shape.ndim - 1; d >= 0; --d) GgufCodec::put_u64(head, uint64_t(t.shape[d]));
    }
    GgufCodec::put_u32(head, ggml_type_of(t.dtype));
    GgufCodec::put_u64(head, offset);
    offset += padded(t.nbytes);
  }
  head.resize(size_t(padded(head.size())), '\0');

  TempFile tmp;
  tmp.path = path + ".tmp";
  tmp.f = std::fopen(tmp.path.c_str(), "wb");
  if (!tmp.f) {
    throw IoError(tmp.path + ": cannot create file: " + std::strerror(errno),
                  "check that the directory exists and is writable");
  }
  auto write_bytes = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, tmp.f) != n)
      throw IoError(tmp.path + ": write failed: " + std::strerror(errno), "is the disk full?");
  };
  write_bytes(head.data(), head.size());
  const std::vector<uint8_t> zeros(size_t(align), 0);
  std::vector<uint8_t> buffer;
  for (const Pending& t : tensors_) {
    const void* src = t.data;
    Tensor host;
    if (t.fill) {
      buffer.assign(t.nbytes, 0);
      t.fill(buffer.data());
      src = buffer.data();
    } else if (t.keep.defined()) {
      host = t.keep.device() == Device::CPU ? t.keep : t.keep.to(t.keep.dtype(), Device::CPU);
      src = host.data();
    }
    TUNE_CHECK(src != nullptr || t.nbytes == 0) << "GGUF tensor " << t.name << " has no data";
    write_bytes(src, t.nbytes);
    write_bytes(zeros.data(), size_t(padded(t.nbytes) - t.nbytes));
  }
  const bool ok = std::fflush(tmp.f) == 0 && !std::ferror(tmp.f);
  const int rc = std::fclose(tmp.f);
  tmp.f = nullptr;
  if (!ok || rc != 0)
    throw IoError(tmp.path + ": write failed: " + std::strerror(errno), "is the disk full?");
  std::error_code ec;
  std::filesystem::rename(tmp.path, path, ec);
  if (ec) throw IoError(path + ": cannot rename from " + tmp.path + ": " + ec.message());
  tmp.keep = true;
}

}  // namespace tune
