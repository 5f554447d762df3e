// safetensors reading (mmap; a single file or a sharded checkpoint with model.safetensors.index.json) and
// writing (temporary file + rename; optional sharding at a size limit with its index).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data region; offsets are relative to the data region.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tune {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  std::string file;  // the file it lives in (for error messages)
  Tensor tensor;     // CPU view of the mapped bytes (read-only memory)
};

// One safetensors file, mapped read-only. Every header entry is validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory (or a single .safetensors path).
class SafetensorsCheckpoint {
 public:
  // `path` is a directory holding model.safetensors or model.safetensors.index.json (+ shards), or a file.
  static SafetensorsCheckpoint open(const std::string& path);
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  // Throws FormatError naming the tensor and the checkpoint when absent.
  const SafetensorsEntry& get(const std::string& name) const;
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, SafetensorsEntry> entries_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes one file atomically. Tensors must be contiguous; CUDA tensors are copied to the host.
void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `dir/model.safetensors`, or when the total exceeds `max_shard_bytes`, shards
// `dir/model-0000i-of-0000n.safetensors` plus `dir/model.safetensors.index.json` (as transformers does).
// Returns the file names written.
std::vector<std::string> safetensors_write_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                                      size_t max_shard_bytes = size_t(5) << 30,
                                                      const std::map<std::string, std::string>& metadata = {});

}  // namespace tune
