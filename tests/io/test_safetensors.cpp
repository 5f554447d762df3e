// safetensors: write/read round trips (single and sharded), and every kind of damaged file gives a FormatError or
// IoError naming the file.
#include "io/safetensors.h"

#include <cstring>
#include <filesystem>

#include "io/json.h"
#include "test_util.h"

namespace tune {

namespace {

NamedTensors sample_tensors() {
  Tensor a = Tensor::empty(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) a.f32()[i] = float(i) * 0.5f - 1.0f;
  Tensor b = a.to(DType::BF16), c = a.to(DType::F16);
  Tensor d = Tensor::empty(DType::I32, {4});
  for (int i = 0; i < 4; ++i) d.ptr<int32_t>()[i] = 100 + i;
  return {{"a", a}, {"b.bf16", b}, {"c.f16", c}, {"d", d}};
}

void expect_same(const Tensor& x, const Tensor& y) {
  ASSERT_EQ(x.dtype(), y.dtype());
  ASSERT_EQ(x.shape(), y.shape());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0);
}

std::string file_bytes(const std::string& path) { return read_file(path); }

// Rewrites a valid file's header with `header` (keeping the data region).
void write_with_header(const std::string& path, const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  test::write_text(path, s + header + data);
}

template <class E>
void expect_error(const std::string& path, const std::string& needle) {
  try {
    SafetensorsCheckpoint::open(path);
    FAIL() << "expected an error for " << path;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Safetensors, RoundTripSingleFile) {
  test::TempDir dir;
  const NamedTensors t = sample_tensors();
  safetensors_write(dir / "x.safetensors", t, {{"format", "pt"}});
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
  SafetensorsFile f(dir / "x.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.entries().size(), t.size());
  for (const auto& [name, tensor] : t) expect_same(f.entries().at(name).tensor, tensor);
  // bf16/f16 round to the nearest value: these inputs are exact.
  EXPECT_EQ(f.entries().at("b.bf16").tensor.to(DType::F32).f32()[5], 1.5f);
  EXPECT_EQ(f.entries().at("c.f16").tensor.to(DType::F32).f32()[1], -0.5f);
}

TEST(Safetensors, ShardedCheckpointWithIndex) {
  test::TempDir dir;
  const NamedTensors t = sample_tensors();
  const auto files = safetensors_write_checkpoint(dir.str(), t, 20);
  ASSERT_GT(files.size(), 2u);
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir.str());
  for (const auto& [name, tensor] : t) expect_same(ck.get(name).tensor, tensor);

  // A missing shard is an IoError naming it.
  std::filesystem::remove(dir / files[1]);
  expect_error<IoError>(dir.str(), files[1]);
}

TEST(Safetensors, IndexNamingATensorAbsentFromItsShard) {
  test::TempDir dir;
  safetensors_write_checkpoint(dir.str(), sample_tensors(), 20);
  Json index = json_load_file(dir / "model.safetensors.index.json");
  index["weight_map"]["ghost"] = index["weight_map"]["a"];
  json_save_file(dir / "model.safetensors.index.json", index);
  expect_error<FormatError>(dir.str(), "'ghost'");
}

TEST(Safetensors, DamagedFilesAreClearErrors) {
  test::TempDir dir;
  const std::string good = dir / "good.safetensors";
  safetensors_write(good, sample_tensors());
  const std::string bytes = file_bytes(good);
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  const std::string header = bytes.substr(8, hlen), data = bytes.substr(8 + hlen);

  const std::string p = dir / "bad.safetensors";
  test::write_text(p, bytes.substr(0, 5));
  expect_error<FormatError>(p, "too short");
  test::write_text(p, bytes.substr(0, 8 + hlen / 2));
  expect_error<FormatError>(p, "header length");
  test::write_text(p, bytes.substr(0, bytes.size() - 3));  // data cut short
  expect_error<FormatError>(p, "outside the data region");
  write_with_header(p, "{\"a\": [1, 2", data);
  expect_error<FormatError>(p, "not valid JSON");
  write_with_header(p, R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", data);
  expect_error<UnsupportedError>(p, "F8_E4M3");
  write_with_header(p, R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", data);
  expect_error<FormatError>(p, "expected 24");
  write_with_header(p, R"({"a":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}})", data);
  expect_error<FormatError>(p, "negative");
  write_with_header(p, R"({"a":{"dtype":"F32","shape":[6]}})", data);
  expect_error<FormatError>(p, "data_offsets");
  expect_error<IoError>(dir / "absent.safetensors", "absent.safetensors");
  expect_error<IoError>(dir.str(), "no model.safetensors");
}

}  // namespace tune
