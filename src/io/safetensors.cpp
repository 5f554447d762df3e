// safetensors reader (mmap + full header validation) and writer (atomic, optional sharding with an index).
#include "io/safetensors.h"


#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/allocator.h"
#include "io/mapped_file.h"
#include "io/json.h"

namespace fs = std::filesystem;

namespace tune {

namespace {

const char* kTruncatedHint = "the file is truncated or corrupt; copy or download it again";


}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  size_t size = 0;
  mapping_ = map_file(path, &size);
  if (size < 8) {
    throw FormatError(path + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header",
                      kTruncatedHint);
  }
  const char* base = static_cast<const char*>(mapping_.get());
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);  // little-endian hosts only (x86-64, aarch64)
  if (header_len > size - 8) {
    throw FormatError(path + ": header length " + std::to_string(header_len) + " exceeds the file size " +
                          std::to_string(size),
                      kTruncatedHint);
  }
  Json header;
  try {
    header = Json::parse(base + 8, base + 8 + header_len);
  } catch (const Json::parse_error&) {
    throw FormatError(path + ": header is not valid JSON", kTruncatedHint);
  }
  if (!header.is_object()) throw FormatError(path + ": header is not a JSON object", kTruncatedHint);

  const size_t data_begin = 8 + header_len;
  const size_t data_size = size - data_begin;
  char* data = const_cast<char*>(base) + data_begin;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& e = it.value();
    if (name == "__metadata__") {
      if (e.is_object()) {
        for (auto m = e.begin(); m != e.end(); ++m)
          if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() || !e.contains("shape") ||
        !e["shape"].is_array() || !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2) {
      throw FormatError(where + ": entry needs dtype, shape and data_offsets [begin, end]", kTruncatedHint);
    }
    SafetensorsEntry entry;
    entry.name = name;
    entry.file = path;
    const std::string dt = e["dtype"].get<std::string>();
    if (!dtype_from_safetensors(dt, &entry.dtype)) {
      throw UnsupportedError(where + ": dtype " + dt + " is not supported",
                             "tune reads F32, F16, BF16, F64, I32, I64, U8 and BOOL tensors");
    }
    std::vector<int64_t> dims;
    for (const Json& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw FormatError(where + ": shape has a non-integer or negative dimension", kTruncatedHint);
      dims.push_back(d.get<int64_t>());
    }
    if (dims.size() > size_t(kMaxDims)) {
      throw UnsupportedError(where + ": " + std::to_string(dims.size()) + " dimensions (tune supports up to " +
                             std::to_string(kMaxDims) + ")");
    }
    entry.shape = Shape::of(dims);
    const Json& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw FormatError(where + ": data_offsets must be non-negative integers", kTruncatedHint);
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size) {
      throw FormatError(where + ": data [" + std::to_string(b) + ", " + std::to_string(en) +
                            ") lies outside the data region of " + std::to_string(data_size) + " bytes",
                        kTruncatedHint);
    }
    const size_t want = dtype_bytes(entry.dtype, entry.shape.numel());
    if (en - b != want) {
      throw FormatError(where + ": " + std::to_string(en - b) + " bytes of data for shape " + entry.shape.str() +
                            " " + dt + " (expected " + std::to_string(want) + ")",
                        kTruncatedHint);
    }
    entry.tensor = Tensor::wrap(data + b, entry.dtype, entry.shape, mapping_);
    entries_.emplace(name, std::move(entry));
  }
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  SafetensorsCheckpoint ck;
  ck.source_ = path;
  auto add_file = [&](const std::string& file) {
    auto f = std::make_shared<SafetensorsFile>(file);
    for (const auto& [name, entry] : f->entries()) {
      if (ck.entries_.count(name))
        throw FormatError(file + ": tensor '" + name + "' also appears in " + ck.entries_.at(name).file,
                          "the checkpoint's shards overlap; re-save it");
      ck.entries_.emplace(name, entry);
    }
    ck.files_.push_back(f);
  };

  if (!fs::is_directory(path)) {
    add_file(path);
    return ck;
  }
  const fs::path dir(path);
  const fs::path index = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  if (fs::exists(index)) {
    const Json j = json_load_file(index.string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw FormatError(index.string() + ": missing object field 'weight_map'", "re-save the checkpoint");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw FormatError(index.string() + ": weight_map['" + it.key() + "'] is not a file name");
      shards.insert(it.value().get<std::string>());
    }
    for (const std::string& s : shards) {
      const fs::path shard = dir / s;
      if (!fs::exists(shard))
        throw IoError(shard.string() + ": shard listed in " + index.filename().string() + " is missing",
                      "copy every model-*.safetensors file of the checkpoint");
      add_file(shard.string());
    }
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!ck.entries_.count(it.key()))
        throw FormatError((dir / it.value().get<std::string>()).string() + ": tensor '" + it.key() +
                              "' listed in the index is not in the shard",
                          "the shard is from another checkpoint or truncated");
    }
  } else if (fs::exists(single)) {
    add_file(single.string());
  } else {
    throw IoError(path + ": no model.safetensors or model.safetensors.index.json",
                  "point --model at a Hugging Face model directory");
  }
  return ck;
}

const SafetensorsEntry& SafetensorsCheckpoint::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    throw FormatError(source_ + ": tensor '" + name + "' is missing", "the checkpoint does not match its config.json");
  return it->second;
}

namespace {

// Header JSON for tensors laid out back to back in order, padded with spaces to a multiple of 8.
std::string make_header(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  Json h = Json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t n = t.nbytes();
    h[name] = {{"dtype", dtype_to_safetensors(t.dtype())},
               {"shape", t.shape().to_vector()},
               {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string s = h.dump();
  while (s.size() % 8) s.push_back(' ');
  return s;
}

}  // namespace

void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = make_header(tensors, metadata);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw IoError(tmp + ": cannot create file", "check that the directory exists and is writable");
    const uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(header.data(), std::streamsize(header.size()));
    for (const auto& [name, t] : tensors) {
      TUNE_CHECK(t.view().is_contiguous()) << "tensor " << name << " is not contiguous";
      const Tensor host = t.device() == Device::CPU ? t : t.to(t.dtype(), Device::CPU);
      f.write(static_cast<const char*>(host.data()), std::streamsize(host.nbytes()));
    }
    f.flush();
    if (!f) throw IoError(tmp + ": write failed", "is the disk full?");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw IoError(path + ": cannot rename from " + tmp + ": " + ec.message());
}

std::vector<std::string> safetensors_write_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                                      size_t max_shard_bytes,
                                                      const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  std::vector<NamedTensors> shards(1);
  size_t total = 0, current = 0;
  for (const auto& nt : tensors) {
    const size_t n = nt.second.nbytes();
    if (current > 0 && current + n > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += n;
    total += n;
  }
  if (shards.size() == 1) {
    safetensors_write((fs::path(dir) / "model.safetensors").string(), tensors, metadata);
    return {"model.safetensors"};
  }
  std::vector<std::string> names;
  Json weight_map = Json::object();
  char buf[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    names.push_back(buf);
    safetensors_write((fs::path(dir) / buf).string(), shards[i], metadata);
    for (const auto& nt : shards[i]) weight_map[nt.first] = buf;
  }
  Json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  json_save_file((fs::path(dir) / "model.safetensors.index.json").string(), index);
  names.push_back("model.safetensors.index.json");
  return names;
}

}  // namespace tune
