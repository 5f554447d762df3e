// Reader of the tokenizer reference files tests/data/tokenizer/tokenizer_refs_*.bin, written by
// tools/reference/make_tokenizer_refs.py (format in its docstring). Shared by
// tests/tokenizer/test_tokenizer.cpp and bench/bench_tokenizer.cpp. Header-only; depends on core/error.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tune::tokenizer_refs {

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return std::move(ss).str();
}

struct Refs {
  std::vector<uint32_t> chunk_offsets;    // byte offsets of the chunks in corpus.txt, n_chunks + 1
  std::vector<std::vector<int32_t>> ids;  // by chunk: the base ids, edited where the file has a record
  std::vector<bool> has_record;           // by chunk
};

// `base` (ids by chunk) is what the records edit; none for the Qwen3 file, the Qwen3 ids for the Qwen2.5
// file.
inline Refs read(const std::string& path, const std::vector<std::vector<int32_t>>* base = nullptr) {
  const std::string data = read_file(path);
  size_t pos = 8;
  auto fail = [&](const std::string& what) -> void { throw FormatError(path + ": " + what); };
  auto u32 = [&] {
    if (pos + 4 > data.size()) fail("truncated");
    uint32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  auto varint = [&] {
    uint64_t x = 0;
    for (int shift = 0;; shift += 7) {
      if (pos >= data.size() || shift > 35) fail("truncated or bad varint");
      const auto b = static_cast<uint8_t>(data[pos++]);
      x |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (b < 0x80) return x;
    }
  };
  if (data.compare(0, 8, "TUNETOKR") != 0) fail("not a tokenizer reference file");
  const uint32_t version = u32(), n_chunks = u32(), n_records = u32(), n_payload = u32();
  if (version != 2) fail("unsupported version " + std::to_string(version));
  Refs r;
  for (uint32_t i = 0; i <= n_chunks; ++i) r.chunk_offsets.push_back(u32());
  if (pos + n_payload != data.size()) fail("size does not match its header");
  r.ids = base ? *base : std::vector<std::vector<int32_t>>(n_chunks);
  r.has_record.assign(n_chunks, false);
  if (r.ids.size() != n_chunks) fail("chunk count differs from the base file");
  for (uint32_t k = 0; k < n_records; ++k) {
    const uint64_t chunk = varint();
    if (chunk >= n_chunks) fail("bad chunk index");
    const std::vector<int32_t>& old = r.ids[chunk];
    std::vector<int32_t> out;
    uint64_t done = 0;  // old[0, done) is dealt with
    for (uint64_t e = 0, n_edits = varint(); e < n_edits; ++e) {
      const uint64_t start = varint(), n_deleted = varint(), n_inserted = varint();
      if (start < done || start + n_deleted > old.size()) fail("bad edit");
      out.insert(out.end(), old.begin() + done, old.begin() + start);
      for (uint64_t i = 0; i < n_inserted; ++i) out.push_back(static_cast<int32_t>(varint()));
      done = start + n_deleted;
    }
    out.insert(out.end(), old.begin() + done, old.end());
    r.ids[chunk] = std::move(out);
    r.has_record[chunk] = true;
  }
  return r;
}

// The chunks of `corpus` as the reference cut it.
inline std::vector<std::string_view> chunks(const std::string& corpus, const Refs& refs) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i + 1 < refs.chunk_offsets.size(); ++i) {
    if (refs.chunk_offsets[i + 1] > corpus.size()) break;
    out.push_back(std::string_view(corpus).substr(refs.chunk_offsets[i],
                                                  refs.chunk_offsets[i + 1] - refs.chunk_offsets[i]));
  }
  return out;
}

}  // namespace tune::tokenizer_refs
