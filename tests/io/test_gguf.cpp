// GGUF: write/read round trips of every metadata type and of tensors of several types, the byte layout
// llama.cpp requires, every kind of damaged file as a FormatError naming the file, a seeded mutation fuzz
// (only tune::Error, never a crash), and llama.cpp's vocab-only Qwen2 GGUF read (and re-written byte for
// byte) when it is present.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <typeinfo>

#include "core/rng.h"
#include "quant/quant.h"
#include "test_util.h"

namespace tune {

namespace {

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::string& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), std::streamsize(b.size()));
}

// Raw little-endian GGUF pieces, for files the writer refuses to make.
struct Raw {
  std::string b;
  Raw& u32(uint32_t v) {
    b.append(reinterpret_cast<const char*>(&v), 4);
    return *this;
  }
  Raw& u64(uint64_t v) {
    b.append(reinterpret_cast<const char*>(&v), 8);
    return *this;
  }
  Raw& str(const std::string& s) {
    u64(s.size());
    b += s;
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b += "GGUF";
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Raw& pad(size_t a = 32) {
    b.resize((b.size() + a - 1) / a * a, '\0');
    return *this;
  }
};

Tensor f32_tensor(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(DType::F32, s);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = rng.normal();
  return t;
}

// A writer holding one value of every metadata type and tensors of several dtypes.
GgufWriter sample_writer(std::vector<Tensor>* keep) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("qwen3"));
  w.set("t.u8", GgufValue::u8(200));
  w.set("t.i8", GgufValue::i8(-100));
  w.set("t.u16", GgufValue::u16(60000));
  w.set("t.i16", GgufValue::i16(-30000));
  w.set("t.u32", GgufValue::u32(4000000000u));
  w.set("t.i32", GgufValue::i32(-2000000000));
  w.set("t.f32", GgufValue::f32(1e-6f));
  w.set("t.bool", GgufValue::boolean(true));
  w.set("t.string", GgufValue::string("héllo, 世界\n"));
  w.set("t.u64", GgufValue::u64(18000000000000000000ull));
  w.set("t.i64", GgufValue::i64(-9000000000000000000ll));
  w.set("t.f64", GgufValue::f64(3.141592653589793));
  w.set("t.empty_string", GgufValue::string(""));
  w.set("a.strings", GgufValue::strings({"a b", "", "Ġhello", "<|im_end|>"}));
  w.set("a.u8", GgufValue::ints(GgufType::UINT8, {0, 1, 255}));
  w.set("a.i8", GgufValue::ints(GgufType::INT8, {-128, 0, 127}));
  w.set("a.u16", GgufValue::ints(GgufType::UINT16, {0, 65535}));
  w.set("a.i16", GgufValue::ints(GgufType::INT16, {-32768, 32767}));
  w.set("a.u32", GgufValue::ints(GgufType::UINT32, {0, 4294967295ll}));
  w.set("a.i32", GgufValue::ints(GgufType::INT32, {1, 3, 4, -5}));
  w.set("a.u64", GgufValue::ints(GgufType::UINT64, {0, 9223372036854775807ll}));
  w.set("a.i64", GgufValue::ints(GgufType::INT64, {-1, 1}));
  w.set("a.f32", GgufValue::floats(GgufType::FLOAT32, {0.5, -2.25, 1e30}));
  w.set("a.f64", GgufValue::floats(GgufType::FLOAT64, {0.1, -1e300}));
  w.set("a.bool", GgufValue::bools({true, false, true}));
  w.set("a.empty", GgufValue::empty_array(GgufType::INT32));
  w.set("a.nested", GgufValue::arrays({GgufValue::strings({"x", "y"}), GgufValue::ints(GgufType::INT32, {7}),
                                       GgufValue::arrays({GgufValue::floats(GgufType::FLOAT32, {1.5})})}));
  const Tensor a = f32_tensor({3, 5}, 1);                      // 2-D f32, rows not a multiple of 32
  const Tensor b = f32_tensor({7}, 2).to(DType::F16);          // 1-D f16
  const Tensor c = f32_tensor({2, 3, 64}, 3).to(DType::BF16);  // 3-D bf16
  const Tensor d = quantize(f32_tensor({4, 256}, 4), DType::Q4_K);
  const Tensor e = quantize(f32_tensor({2, 64}, 5), DType::Q8_0);
  const Tensor f = quantize(f32_tensor({1, 2, 3, 256}, 6), DType::Q6_K);  // 4-D
  Tensor g = Tensor::empty(DType::I32, {5});
  for (int i = 0; i < 5; ++i) g.ptr<int32_t>()[i] = i * 1000 - 7;
  *keep = {a, b, c, d, e, f, g};
  w.add_tensor("token_embd.weight", a);
  w.add_tensor("blk.0.attn_norm.weight", b);
  w.add_tensor("blk.0.ffn_up_exps.weight", c);
  w.add_tensor("blk.0.attn_q.weight", d.dtype(), d.shape(), d.data());  // borrowed pointer
  w.add_tensor("blk.0.attn_k.weight", e);
  w.add_tensor("blk.0.four_d.weight", f);
  const Tensor g_copy = g;
  w.add_tensor("ids", DType::I32, g.shape(), [g_copy](void* dst) { std::memcpy(dst, g_copy.data(), 20); });
  return w;
}

template <class E>
std::string expect_error(const std::string& path, const std::string& needle) {
  try {
    GgufFile f(path);
    ADD_FAILURE() << "expected an error containing '" << needle << "' for " << path;
  } catch (const E& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find(path), std::string::npos) << "the message should name the file: " << what;
    return what;
  }
  return "";
}

}  // namespace

TEST(Gguf, RoundTripMetadataAndTensors) {
  test::TempDir dir;
  std::vector<Tensor> keep;
  const GgufWriter w = sample_writer(&keep);
  const std::string path = dir / "m.gguf";
  w.write(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  // Metadata: same order, same values.
  ASSERT_EQ(f.metadata().size(), 28u);
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");
  EXPECT_EQ(f.metadata().back().first, "a.nested");
  for (const auto& [key, value] : f.metadata()) {
    const GgufValue* want = w.find(key);
    ASSERT_NE(want, nullptr) << key;
    EXPECT_TRUE(value == *want) << key << " is " << value.type_str();
  }
  EXPECT_EQ(f.get("t.u8").as_int(), 200);
  EXPECT_EQ(f.get("t.i8").as_int(), -100);
  EXPECT_EQ(f.get("t.u16").as_int(), 60000);
  EXPECT_EQ(f.get("t.i16").as_int(), -30000);
  EXPECT_EQ(f.get("t.u32").as_u32(), 4000000000u);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get("t.f32").as_f32(), 1e-6f);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.get_string("t.string"), "héllo, 世界\n");
  EXPECT_THROW(f.get("t.u64").as_int(), FormatError);  // above INT64_MAX
  EXPECT_EQ(f.get_int("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_float("t.f64"), 3.141592653589793);
  EXPECT_EQ(f.get_string("t.empty_string"), "");
  EXPECT_EQ(f.get("a.strings").as_strings(), (std::vector<std::string>{"a b", "", "Ġhello", "<|im_end|>"}));
  EXPECT_EQ(f.get("a.i8").as_ints(), (std::vector<int64_t>{-128, 0, 127}));
  EXPECT_EQ(f.get("a.u32").as_ints(), (std::vector<int64_t>{0, 4294967295ll}));
  EXPECT_EQ(f.get("a.i32").type_str(), "array[int32]");
  EXPECT_EQ(f.get("a.i32").at(3).as_int(), -5);
  EXPECT_EQ(f.get("a.f32").as_floats(), (std::vector<double>{0.5, -2.25, double(1e30f)}));
  EXPECT_EQ(f.get("a.f64").as_floats(), (std::vector<double>{0.1, -1e300}));
  EXPECT_EQ(f.get("a.bool").size(), 3u);
  EXPECT_TRUE(f.get("a.bool").at(2).as_bool());
  EXPECT_EQ(f.get("a.empty").size(), 0u);
  EXPECT_EQ(f.get("a.empty").elem_type(), GgufType::INT32);
  const auto& nested = f.get("a.nested").as_arrays();
  ASSERT_EQ(nested.size(), 3u);
  EXPECT_EQ(nested[0].as_strings()[1], "y");
  EXPECT_EQ(nested[2].as_arrays()[0].as_floats()[0], 1.5);
  // Typed access with the wrong type names the key.
  try {
    f.get_string("t.u32");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("t.u32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.get("missing.key"), FormatError);

  // Tensors: same order, ne reversed, aligned sequential offsets, identical bytes.
  const char* names[] = {"token_embd.weight",
                         "blk.0.attn_norm.weight",
                         "blk.0.ffn_up_exps.weight",
                         "blk.0.attn_q.weight",
                         "blk.0.attn_k.weight",
                         "blk.0.four_d.weight",
                         "ids"};
  ASSERT_EQ(f.tensors().size(), 7u);
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < 7; ++i) {
    const GgufTensorInfo& info = f.tensors()[i];
    EXPECT_EQ(info.name, names[i]);
    EXPECT_EQ(info.offset, expected_offset) << info.name;
    expected_offset += (info.nbytes + 31) / 32 * 32;
    const Tensor t = f.tensor(info.name);
    EXPECT_EQ(t.dtype(), keep[i].dtype()) << info.name;
    EXPECT_EQ(t.shape(), keep[i].shape()) << info.name;
    ASSERT_EQ(t.nbytes(), keep[i].nbytes());
    EXPECT_EQ(std::memcmp(t.data(), keep[i].data(), t.nbytes()), 0) << info.name;
  }
  EXPECT_EQ(f.data_offset() + expected_offset, f.file_size());
  const GgufTensorInfo* ffn = f.find_tensor("blk.0.ffn_up_exps.weight");
  EXPECT_EQ(ffn->ne, (std::vector<int64_t>{64, 3, 2}));             // innermost first
  EXPECT_EQ(ffn->ggml_type, 30u);                                   // GGML_TYPE_BF16
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->ggml_type, 12u);  // GGML_TYPE_Q4_K
  EXPECT_EQ(f.find_tensor("blk.0.four_d.weight")->ne, (std::vector<int64_t>{256, 3, 2, 1}));
  EXPECT_THROW(f.tensor("nope"), FormatError);
}

TEST(Gguf, CustomAlignmentAndNoTensors) {
  test::TempDir dir;
  GgufWriter w;
  w.set("general.alignment", GgufValue::u32(64));
  w.add_tensor("a", f32_tensor({3}, 1));
  w.add_tensor("b", f32_tensor({5}, 2));
  w.write(dir / "a.gguf");
  GgufFile f(dir / "a.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find_tensor("b")->offset, 64u);
  EXPECT_EQ(f.file_size(), f.data_offset() + 128);

  GgufWriter empty;
  empty.set("general.type", GgufValue::string("imatrix"));
  empty.write(dir / "e.gguf");
  GgufFile e(dir / "e.gguf");
  EXPECT_TRUE(e.tensors().empty());
  EXPECT_EQ(e.get_string("general.type"), "imatrix");
  EXPECT_EQ(e.file_size() % 32, 0u);  // the header is padded, as ggml writes it
}

TEST(Gguf, WriterRejectsBadInput) {
  GgufWriter w;
  EXPECT_THROW(w.set("", GgufValue::u32(1)), ConfigError);
  EXPECT_THROW(w.set("general.alignment", GgufValue::u32(24)), ConfigError);
  EXPECT_THROW(w.set("general.alignment", GgufValue::u64(32)), ConfigError);
  EXPECT_THROW(GgufValue::ints(GgufType::UINT8, {256}), ConfigError);
  EXPECT_THROW(GgufValue::ints(GgufType::FLOAT32, {1}), ConfigError);
  const Tensor t = f32_tensor({4}, 1);
  w.add_tensor("x", t);
  EXPECT_THROW(w.add_tensor("x", t), ConfigError);
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), t), ConfigError);
  EXPECT_THROW(w.add_tensor("", t), ConfigError);
  EXPECT_THROW(w.add_tensor("five", f32_tensor({1, 1, 1, 1, 2}, 1)), UnsupportedError);
  EXPECT_THROW(w.add_tensor("u8", Tensor::zeros(DType::U8, {4})), UnsupportedError);
  EXPECT_THROW(w.add_tensor("q", DType::Q4_K, Shape{2, 128}, static_cast<const void*>(nullptr)),
               ConfigError);  // 128 % 256
  EXPECT_EQ(w.tensor_count(), 1u);
  // A failed write leaves no file behind.
  test::TempDir dir;
  GgufWriter bad;
  bad.add_tensor("t", DType::F32, Shape{4}, [](void*) { throw IoError("source went away"); });
  EXPECT_THROW(bad.write(dir / "bad.gguf"), IoError);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.gguf.tmp"));
}

TEST(Gguf, DamagedHeadersAreFormatErrors) {
  test::TempDir dir;
  const std::string p = dir / "x.gguf";
  write_bytes(p, "GGU");
  expect_error<FormatError>(p, "too short");
  write_bytes(p, Raw().header(0, 0).b.replace(0, 4, "GGML"));
  expect_error<FormatError>(p, "not a GGUF file");
  write_bytes(p, Raw().header(0, 0, 1).b);
  expect_error<FormatError>(p, "version 1");
  write_bytes(p, Raw().header(0, 0, 4).b);
  expect_error<FormatError>(p, "unknown GGUF version 4");
  write_bytes(p, Raw().header(0, 0, 0x03000000).b);
  expect_error<FormatError>(p, "big-endian");
  write_bytes(p, Raw().header(0, uint64_t(1) << 60).b);
  expect_error<FormatError>(p, "metadata count");
  write_bytes(p, Raw().header(uint64_t(-1), 0).b);
  expect_error<FormatError>(p, "tensor count");
  // A key claiming a huge length, a string value longer than the file, an unknown value type.
  write_bytes(p, Raw().header(0, 1).u64(uint64_t(1) << 40).b + "xxxxxxxxxxxx");
  expect_error<FormatError>(p, "metadata key has length");
  write_bytes(p, Raw().header(0, 1).str("k").u32(8).u64(1000).b + "short");
  expect_error<FormatError>(p, "string value has length 1000");
  write_bytes(p, Raw().header(0, 1).str("k").u32(13).u32(0).b);
  expect_error<FormatError>(p, "unknown value type 13");
  write_bytes(p, Raw().header(0, 1).str("k").u32(9).u32(42).u64(0).b);
  expect_error<FormatError>(p, "unknown array element type 42");
  write_bytes(p, Raw().header(0, 1).str("k").u32(9).u32(5).u64(uint64_t(1) << 61).b);
  expect_error<FormatError>(p, "does not fit");
  write_bytes(p, Raw().header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2).b);
  expect_error<FormatError>(p, "duplicate metadata key 'k'");
  write_bytes(p, Raw().header(0, 1).str("").u32(4).u32(1).b);
  expect_error<FormatError>(p, "empty");
  write_bytes(p, Raw().header(0, 1).str("general.alignment").u32(4).u32(24).b);
  expect_error<FormatError>(p, "not a power of two");
  write_bytes(p, Raw().header(0, 1).str("general.alignment").u32(10).u64(32).b);
  expect_error<FormatError>(p, "not uint32");
  {  // arrays nested 40 deep
    Raw r;
    r.header(0, 1).str("k").u32(9);
    for (int i = 0; i < 40; ++i) r.u32(9).u64(1);
    r.u32(4).u64(0);
    write_bytes(p, r.b);
    expect_error<FormatError>(p, "nested deeper");
  }
}

TEST(Gguf, DamagedTensorInfosAreFormatErrors) {
  test::TempDir dir;
  const std::string p = dir / "x.gguf";
  // One f32 tensor of 8 elements: name, n_dims, ne, type, offset; then 32 bytes of data.
  auto file = [](const std::string& name, uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type,
                 uint64_t offset, size_t data_bytes = 32) {
    Raw r;
    r.header(1, 0).str(name).u32(n_dims);
    for (uint64_t v : ne) r.u64(v);
    r.u32(type).u64(offset).pad();
    r.b.append(data_bytes, '\x01');
    return r.b;
  };
  write_bytes(p, file("w", 1, {8}, 0, 0));
  EXPECT_NO_THROW(GgufFile{p});
  write_bytes(p, file("w", 5, {8, 1, 1, 1, 1}, 0, 0));
  expect_error<FormatError>(p, "5 dimensions");
  write_bytes(p, file("w", 1, {uint64_t(-8)}, 0, 0));
  expect_error<FormatError>(p, "negative dimension");
  write_bytes(p, file("w", 1, {8}, 4, 0));  // a removed ggml type
  expect_error<FormatError>(p, "unknown ggml type id 4");
  write_bytes(p, file("w", 1, {8}, 99, 0));
  expect_error<FormatError>(p, "unknown ggml type id 99");
  write_bytes(p, file("w", 1, {8}, 12, 0));  // q4_K rows of 8
  expect_error<FormatError>(p, "not a whole number of q4_K blocks");
  write_bytes(p, file("w", 1, {8}, 0, 16));
  expect_error<FormatError>(p, "not a multiple of the alignment");
  write_bytes(p, file("w", 1, {8}, 0, 64));
  expect_error<FormatError>(p, "outside the data section");
  write_bytes(p, file("w", 1, {8}, 0, 0, 16));  // data cut short
  expect_error<FormatError>(p, "outside the data section");
  write_bytes(p, file("w", 2, {uint64_t(1) << 20, uint64_t(1) << 20}, 0, 0));
  expect_error<FormatError>(p, "needs more bytes");
  write_bytes(p, file("w", 2, {uint64_t(1) << 62, 4}, 0, 0));
  expect_error<FormatError>(p, "too many elements");
  write_bytes(p, file(std::string(64, 'n'), 1, {8}, 0, 0));
  expect_error<FormatError>(p, "limit is 63");
  write_bytes(p, file("", 1, {8}, 0, 0));
  expect_error<FormatError>(p, "empty name");
  {
    Raw r;
    r.header(2, 0);
    for (int i = 0; i < 2; ++i) r.str("w").u32(1).u64(8).u32(0).u64(uint64_t(i) * 32);
    r.pad();
    r.b.append(64, '\0');
    write_bytes(p, r.b);
    expect_error<FormatError>(p, "duplicate tensor name 'w'");
  }
  {  // the data section would start past the end of the file
    Raw r;
    r.header(1, 0).str("w").u32(1).u64(8).u32(0).u64(0);
    write_bytes(p, r.b);
    expect_error<FormatError>(p, "past the end of the file");
  }
  // A known ggml type tune lacks opens (it can be listed) but its data cannot be used.
  write_bytes(p, file("iq", 1, {256}, 16, 0, 96));  // iq2_xxs: 66 bytes per 256
  GgufFile f(p);
  EXPECT_FALSE(f.tensors()[0].has_dtype);
  EXPECT_EQ(f.tensors()[0].nbytes, 66u);
  try {
    f.tensor("iq");
    FAIL();
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
}

TEST(Gguf, EveryTruncationIsAFormatError) {
  test::TempDir dir;
  std::vector<Tensor> keep;
  sample_writer(&keep).write(dir / "full.gguf");
  const std::string full = bytes_of(dir / "full.gguf");
  GgufFile whole(dir / "full.gguf");
  const size_t data_end = whole.data_offset() + whole.tensors().back().offset + whole.tensors().back().nbytes;
  const std::string p = dir / "cut.gguf";
  for (size_t n = 0; n < data_end; ++n) {
    write_bytes(p, full.substr(0, n));
    try {
      GgufFile f(p);
      ADD_FAILURE() << "a file cut to " << n << " of " << full.size() << " bytes opened";
    } catch (const FormatError& e) {
      ASSERT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

// Seeded mutations of a valid file: flipped bytes, overwritten length/count fields, truncation, inserted and
// deleted bytes. Opening and reading everything may fail only with tune::Error.
TEST(Gguf, FuzzMutationsRaiseOnlyTuneErrors) {
  test::TempDir dir;
  std::vector<Tensor> keep;
  sample_writer(&keep).write(dir / "seed.gguf");
  const std::string base = bytes_of(dir / "seed.gguf");
  const size_t header_bytes = GgufFile(dir / "seed.gguf").data_offset();
  const std::string p = dir / "fuzz.gguf";
  Rng rng(2024);
  int opened = 0, rejected = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int iter = 0; iter < 4000; ++iter) {
    std::string b = base;
    const int n_mut = 1 + int(rng.below(4));
    for (int m = 0; m < n_mut && !b.empty(); ++m) {
      // Most mutations hit the header (metadata and tensor infos), where the parsing is.
      const size_t at = size_t(rng.below(rng.below(4) ? std::min(header_bytes, b.size()) : b.size()));
      switch (rng.below(6)) {
        case 0:
          b[at] = char(rng.next());
          break;
        case 1:
          b[at] = char(uint8_t(b[at]) ^ uint8_t(1u << rng.below(8)));
          break;
        case 2: {  // a plausible-looking or huge 64-bit field
          const uint64_t vals[] = {
              0, 1, 31, 32, 255, 65535, uint64_t(1) << 31, uint64_t(1) << 40, ~uint64_t(0), rng.next()};
          const uint64_t v = vals[rng.below(10)];
          std::memcpy(b.data() + at, &v, std::min<size_t>(8, b.size() - at));
          break;
        }
        case 3:
          b.resize(size_t(rng.below(b.size())));
          break;
        case 4:
          b.insert(at, size_t(1 + rng.below(16)), char(rng.next()));
          break;
        case 5:
          b.erase(at, size_t(1 + rng.below(16)));
          break;
      }
    }
    write_bytes(p, b);
    try {
      GgufFile f(p);
      ++opened;
      for (const auto& [key, value] : f.metadata()) {  // touch every value
        (void)value.type_str();
        if (value.is_array()) {
          for (size_t i = 0; i < std::min<size_t>(value.size(), 4); ++i) (void)value.at(i);
        }
      }
      uint64_t sum = 0;
      for (const GgufTensorInfo& info : f.tensors()) {
        const auto* d = static_cast<const uint8_t*>(f.tensor_data(info));
        for (size_t i = 0; i < info.nbytes; ++i) sum += d[i];
        if (info.has_dtype) (void)f.tensor(info.name).numel();
      }
      (void)sum;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": non-tune exception " << typeid(e).name() << ": " << e.what();
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fuzz: %d files opened, %d rejected with tune::Error, %.2f s\n", opened, rejected, secs);
  EXPECT_GT(rejected, 1000);
}

// llama.cpp's vocab-only Qwen2 GGUF (fetched by scripts/fetch_testdata.sh from the node-llama-cpp bundle).
TEST(Gguf, LlamaCppQwen2VocabFile) {
  const std::string path = std::string(TUNE_SOURCE_DIR) + "/.testdata/llama/models/ggml-vocab-qwen2.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent; run scripts/fetch_testdata.sh";
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
  const auto& tokens = f.get("tokenizer.ggml.tokens").as_strings();
  ASSERT_EQ(tokens.size(), 151936u);
  EXPECT_EQ(tokens[151643], "<|endoftext|>");
  EXPECT_EQ(tokens[151645], "<|im_end|>");
  EXPECT_EQ(tokens[220], "Ġ");  // GPT-2 byte-level space
  const GgufValue& types = f.get("tokenizer.ggml.token_type");
  EXPECT_EQ(types.elem_type(), GgufType::INT32);
  std::map<int64_t, int> counts;
  for (int64_t t : types.as_ints()) counts[t]++;
  EXPECT_EQ(counts[1], 151643);  // NORMAL
  EXPECT_EQ(counts[3], 3);       // CONTROL
  EXPECT_EQ(counts[4], 290);     // USER_DEFINED padding
  EXPECT_EQ(f.get("tokenizer.ggml.merges").size(), 151387u);
  EXPECT_EQ(f.get("tokenizer.ggml.eos_token_id").as_u32(), 151643u);

  // Writing the same key/value pairs back gives the same bytes (then the header padding ggml's writer adds).
  GgufWriter w;
  for (const auto& [key, value] : f.metadata()) w.set(key, value);
  test::TempDir dir;
  w.write(dir / "copy.gguf");
  const std::string a = bytes_of(path), b = bytes_of(dir / "copy.gguf");
  ASSERT_GE(b.size(), a.size());
  EXPECT_LT(b.size() - a.size(), 32u);
  EXPECT_TRUE(b.compare(0, a.size(), a) == 0) << "re-written metadata differs from llama.cpp's file";
  EXPECT_EQ(b.find_first_not_of('\0', a.size()), std::string::npos);
}

}  // namespace tune
