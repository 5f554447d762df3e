// GGUF v3 files (llama.cpp's model format): reading (mmap, every header field validated) and writing
// (temporary file
// + rename). Layout: "GGUF", u32 version, i64 tensor count, i64 key count, the key/value pairs (string key,
// u32 value type, value), the tensor infos (name, u32 n_dims, n_dims × i64 ne, u32 ggml type, u64 offset),
// zero padding to the alignment (`general.alignment`, u32, default 32), then the tensor data, each tensor at
// an aligned offset relative to the data start. Strings are u64 length + bytes (no NUL); arrays are u32
// element type + u64 count + elements. Dimension order: GGUF lists `ne` innermost first; tune's shapes are
// outermost first, so the reader and writer reverse them (a [out, in] weight is ne = {in, out}). Depends on
// core (tensor, dtype, errors).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tune {

// Metadata value types (gguf_type).
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);  // "uint32", "string", "array", ...

// One metadata value: a scalar, a string or an array (of scalars, strings or arrays). Made by the typed
// factories; read by the accessors, which throw FormatError when the value has another type.
class GgufValue {
 public:
  GgufValue() = default;  // uint8 0
  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f64(double v);
  // Arrays. `ints` takes any integer element type (values must fit), `floats` FLOAT32 or FLOAT64.
  static GgufValue strings(std::vector<std::string> v);
  static GgufValue ints(GgufType elem, const std::vector<int64_t>& v);
  static GgufValue floats(GgufType elem, const std::vector<double>& v);
  static GgufValue bools(const std::vector<bool>& v);
  static GgufValue arrays(
      std::vector<GgufValue> v);  // nested arrays (llama.cpp's reader does not accept these)
  static GgufValue empty_array(GgufType elem);

  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::ARRAY; }
  std::string type_str() const;  // "uint32", "array[string]", ...

  // Scalars: exact type.
  uint32_t as_u32() const;
  float as_f32() const;
  bool as_bool() const;
  const std::string& as_string() const;
  // Scalars: any integer type (as int64; uint64 above INT64_MAX is an error) / FLOAT32 or FLOAT64.
  int64_t as_int() const;
  double as_float() const;

  // Arrays.
  GgufType elem_type() const;  // FormatError unless an array
  size_t size() const;         // element count; FormatError unless an array
  const std::vector<std::string>& as_strings() const;
  std::vector<int64_t> as_ints() const;   // any integer element type
  std::vector<double> as_floats() const;  // FLOAT32 / FLOAT64 elements
  const std::vector<GgufValue>& as_arrays() const;
  GgufValue at(size_t i) const;  // element i as a scalar (or array) value

  bool operator==(const GgufValue& o) const;
  bool operator!=(const GgufValue& o) const { return !(*this == o); }

 private:
  friend struct GgufCodec;  // the reader and writer in gguf.cpp
  GgufType type_ = GgufType::UINT8;
  uint64_t bits_ = 0;  // scalar payload: integers zero-extended, bool 0/1, floats by bit pattern
  std::string str_;
  GgufType elem_ = GgufType::UINT8;  // arrays
  std::vector<uint8_t> raw_;         // numeric/bool elements, little-endian, element size each
  std::vector<std::string> strs_;    // string elements
  std::vector<GgufValue> vals_;      // array elements
};

// ggml tensor types (enum ggml_type): id, name, elements per block, bytes per block. Every id ggml defines is
// known, so files holding types tune lacks (IQ*, Q8_K, TQ*, MXFP4, ...) can still be opened and listed.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_size;
  size_t type_size;
};
// Null for an id ggml never defined or has removed.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
// The ggml id of a tune dtype; UnsupportedError for types GGUF cannot hold (u8, bool).
uint32_t ggml_type_of(DType t);
// The tune dtype of a ggml id; false when tune lacks it.
bool dtype_of_ggml_type(uint32_t id, DType* out);

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<int64_t> ne;  // GGUF order: ne[0] innermost
  Shape shape;              // tune order: reversed ne
  uint64_t offset = 0;      // relative to the data section
  size_t nbytes = 0;
  bool has_dtype = false;  // tune supports ggml_type
  DType dtype = DType::F32;
};

// A GGUF file mapped read-only. The constructor validates the whole header: magic, version (2 or 3), counts
// and lengths against the file size, value types, unique keys and tensor names, alignment (a power of two),
// dims ≤ 4, known ggml type ids, rows a whole number of blocks, offsets aligned and inside the file. Any
// failure is a FormatError naming the file, the byte offset and what is wrong.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // File offset of the data section (the header end rounded up to the alignment; past the end of a file
  // without tensors when its writer did not pad).
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }

  // Key/value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  // The value of `key`; FormatError naming the file and key when absent or (typed forms) of another type.
  const GgufValue& get(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // The tensor's bytes as a tune tensor (a view of the mapping, read-only): FormatError when absent,
  // UnsupportedError when tune lacks its ggml type.
  Tensor tensor(const std::string& name) const;
  // Raw bytes of a tensor (any ggml type).
  const void* tensor_data(const GgufTensorInfo& info) const;

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF v3 file. Keys keep the order of their first set(); tensors are written in the order added,
// each padded to the alignment (`general.alignment` if set, else 32), so the offsets are the sequential ones
// llama.cpp requires. write() goes to PATH.tmp and renames it over PATH.
class GgufWriter {
 public:
  // Sets (or replaces) a key. ConfigError for an empty key; `general.alignment` must be a uint32 power of
  // two.
  void set(const std::string& key, GgufValue value);
  const GgufValue* find(const std::string& key) const;

  // Adds a tensor of tune shape `shape` (≤ 4 dims; the last dim a whole number of blocks) whose bytes are at
  // `data`; the memory must stay valid until write() returns. ConfigError for a bad or repeated name (names
  // are < 64 bytes).
  void add_tensor(const std::string& name, DType dtype, const Shape& shape, const void* data);
  // As above, from a contiguous tensor (copied to the host at write time if on a device); keeps it alive.
  void add_tensor(const std::string& name, const Tensor& t);
  // As above with the bytes produced at write time: `fill(dst)` writes the tensor's nbytes into dst. Lets an
  // exporter quantize one tensor at a time instead of holding the whole quantized model.
  void add_tensor(const std::string& name, DType dtype, const Shape& shape,
                  std::function<void(void* dst)> fill);

  size_t tensor_count() const { return tensors_.size(); }
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    size_t nbytes;
    const void* data = nullptr;
    Tensor keep;
    std::function<void(void*)> fill;
  };
  void add_pending(Pending p);
  uint64_t alignment() const;

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<Pending> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace tune
