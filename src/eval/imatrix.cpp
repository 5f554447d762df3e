// Importance-matrix collection through the forward pass's linear observer, and llama.cpp's imatrix files.
#include "eval/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/forward.h"
#include "model/names.h"

namespace tune {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama-imatrix ignores dense products over fewer rows than this (its graph callback's batch-size filter).
constexpr int64_t kMinDenseRows = 16;

// One weight the observer may see: its bytes (all experts of a 3-D tensor), GGUF name and running sums.
struct Watched {
  const uint8_t* begin = nullptr;
  size_t nbytes = 0;
  std::string name;
  int64_t n_mat = 1, cols = 0;
  std::vector<double> sums;
  std::vector<int64_t> counts;
};

class Collector {
 public:
  Collector(const Model& model, bool process_output) {
    for (const TensorSpec& s : model_tensor_specs(model.config)) {
      const Tensor& t = weights_field(model.weights, s);
      if (!t.defined() || s.shape.ndim < 2 || !ends_with(s.name, ".weight")) continue;
      const std::string name = gguf_tensor_name(model.config, s.name);
      if (name.rfind("blk.", 0) != 0 && !(process_output && name == "output.weight")) continue;
      Watched w;
      w.begin = static_cast<const uint8_t*>(t.data());
      w.nbytes = t.nbytes();
      w.name = name;
      w.n_mat = s.shape.ndim == 3 ? s.shape[0] : 1;
      w.cols = s.shape[s.shape.ndim - 1];
      w.sums.assign(size_t(w.n_mat * w.cols), 0.0);
      w.counts.assign(size_t(w.n_mat), 0);
      index_[w.begin] = watched_.size();
      watched_.push_back(std::move(w));
    }
  }

  // x (rows, cols) f32; w one weight of the table or an expert's slice of one.
  void observe(const Tensor& x, const Tensor& w) {
    const auto* p = static_cast<const uint8_t*>(w.data());
    auto it = index_.upper_bound(p);
    if (it == index_.begin()) return;
    Watched& e = watched_[std::prev(it)->second];
    if (p >= e.begin + e.nbytes) return;
    const int64_t rows = x.size(0);
    TUNE_CHECK(x.dtype() == DType::F32 && x.ndim() == 2 && x.size(1) == e.cols)
        << "imatrix: input of " << e.name << " has shape " << x.shape().str();
    int64_t m = 0;
    if (e.n_mat > 1) {
      m = int64_t(size_t(p - e.begin) / (e.nbytes / size_t(e.n_mat)));
    } else if (rows < kMinDenseRows) {
      return;
    }
    double* acc = e.sums.data() + m * e.cols;
    const float* xs = x.f32();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < e.cols; ++j) acc[j] += double(xs[r * e.cols + j]) * double(xs[r * e.cols + j]);
    e.counts[size_t(m)] += rows;
  }

  // The entries, columns in GGUF order. A weight that never saw a token has no entry (llama-imatrix creates
  // one on the first collected product), so llama-quantize quantizes it without importance.
  std::map<std::string, ImatrixEntry> entries(const ModelConfig& c) const {
    std::map<std::string, ImatrixEntry> out;
    for (const Watched& w : watched_) {
      if (std::all_of(w.counts.begin(), w.counts.end(), [](int64_t n) { return n == 0; })) continue;
      ImatrixEntry e;
      e.cols = w.cols;
      e.counts = w.counts;
      e.sums = w.sums;
      const std::vector<int64_t> order = gguf_column_order(c, w.name);
      if (!order.empty()) {
        for (int64_t m = 0; m < w.n_mat; ++m)
          for (int64_t j = 0; j < w.cols; ++j) e.sums[size_t(m * w.cols + j)] = w.sums[size_t(m * w.cols + order[size_t(j)])];
      }
      out[w.name] = std::move(e);
    }
    return out;
  }

 private:
  std::vector<Watched> watched_;
  std::map<const uint8_t*, size_t> index_;
};

// Little-endian reader over a legacy .dat file's bytes.
struct DatReader {
  const std::string& path;
  const std::string& bytes;
  size_t pos = 0;
  bool at_end() const { return pos >= bytes.size(); }
  int32_t i32(const char* what) {
    if (pos + 4 > bytes.size()) throw FormatError(path + ": truncated legacy imatrix (reading " + what + ")");
    int32_t v;
    std::memcpy(&v, bytes.data() + pos, 4);
    pos += 4;
    return v;
  }
  std::string str(int64_t n, const char* what) {
    if (n < 0 || pos + size_t(n) > bytes.size())
      throw FormatError(path + ": truncated legacy imatrix (reading " + what + ")");
    std::string s = bytes.substr(pos, size_t(n));
    pos += size_t(n);
    return s;
  }
};

Imatrix load_legacy(const std::string& path) {
  const std::string bytes = read_file(path);
  DatReader r{path, bytes};
  Imatrix m;
  m.legacy = true;
  const int32_t n = r.i32("the entry count");
  if (n < 1) throw FormatError(path + ": not an imatrix (no GGUF magic, and no entries as a legacy .dat file)");
  for (int32_t i = 0; i < n; ++i) {
    const std::string name = r.str(r.i32("a name length"), "a name");
    const int32_t ncall = r.i32("ncall");
    const int32_t nval = r.i32("nval");
    if (nval < 1) throw FormatError(path + ": entry " + name + " has " + std::to_string(nval) + " values");
    const std::string raw = r.str(int64_t(nval) * 4, "values");
    ImatrixEntry e;
    e.cols = nval;
    e.counts = {ncall};
    e.sums.resize(size_t(nval));
    for (int32_t j = 0; j < nval; ++j) {
      float v;
      std::memcpy(&v, raw.data() + size_t(j) * 4, 4);
      e.sums[size_t(j)] = v;
    }
    m.entries[name] = std::move(e);
  }
  // Optional trailer: chunk count and dataset name.
  if (!r.at_end()) {
    m.chunk_count = r.i32("the chunk count");
    if (!r.at_end()) {
      const int32_t len = r.i32("the dataset name length");
      if (len > 0) m.datasets.push_back(r.str(len, "the dataset name"));
    }
  }
  return m;
}

Imatrix load_gguf(const std::string& path) {
  const GgufFile f(path);
  Imatrix m;
  const GgufValue* datasets = f.find("imatrix.datasets");
  const GgufValue* chunk_count = f.find("imatrix.chunk_count");
  const GgufValue* chunk_size = f.find("imatrix.chunk_size");
  if (!datasets || !chunk_count || !chunk_size)
    throw FormatError(path + ": imatrix.datasets, imatrix.chunk_count or imatrix.chunk_size missing",
                      "llama-quantize refuses such a file too; write it with tune imatrix or llama-imatrix");
  if (datasets->is_array() && datasets->elem_type() == GgufType::STRING) m.datasets = datasets->as_strings();
  m.chunk_count = chunk_count->as_int();
  m.chunk_size = chunk_size->as_int();
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> parts;
  for (const GgufTensorInfo& t : f.tensors()) {
    if (ends_with(t.name, ".in_sum2")) parts[t.name.substr(0, t.name.size() - 8)].first = &t;
    else if (ends_with(t.name, ".counts")) parts[t.name.substr(0, t.name.size() - 7)].second = &t;
  }
  if (parts.empty()) throw FormatError(path + ": no <weight>.in_sum2 tensors", "is this an imatrix file?");
  for (const auto& [name, p] : parts) {
    if (!p.first || !p.second) throw FormatError(path + ": " + name + " has " + (p.first ? ".in_sum2 but no .counts" : ".counts but no .in_sum2"));
    if (!p.first->has_dtype || p.first->dtype != DType::F32 || !p.second->has_dtype || p.second->dtype != DType::F32)
      throw FormatError(path + ": " + name + ".in_sum2 and .counts must be F32");
    const Tensor sums = f.tensor(p.first->name), counts = f.tensor(p.second->name);
    const int64_t n_mat = counts.numel();
    if (n_mat < 1 || sums.numel() % n_mat != 0)
      throw FormatError(path + ": " + name + ".in_sum2 has " + std::to_string(sums.numel()) + " values for " +
                        std::to_string(n_mat) + " counts");
    ImatrixEntry e;
    e.cols = sums.numel() / n_mat;
    e.sums.assign(sums.ptr<float>(), sums.ptr<float>() + sums.numel());
    for (int64_t i = 0; i < n_mat; ++i) e.counts.push_back(std::lround(counts.ptr<float>()[i]));
    m.entries[name] = std::move(e);
  }
  return m;
}

}  // namespace

Imatrix imatrix_collect(const Model& model, std::span<const int32_t> ids, const ImatrixOptions& o) {
  if (o.n_ctx < 1) throw ConfigError("imatrix: --ctx must be positive, got " + std::to_string(o.n_ctx));
  int64_t chunks = int64_t(ids.size()) / o.n_ctx;
  if (chunks == 0)
    throw ConfigError("imatrix: the text has " + std::to_string(ids.size()) + " tokens, fewer than one chunk of " +
                          std::to_string(o.n_ctx),
                      "use a longer text or a smaller --ctx");
  if (o.max_chunks >= 0) chunks = std::min(chunks, o.max_chunks);
  Collector col(model, o.process_output);
  {
    LinearObserverScope scope([&col](const Tensor& x, const Tensor& w) { col.observe(x, w); });
    for (int64_t c = 0; c < chunks; ++c) {
      (void)model_logits(model, ids.subspan(size_t(c * o.n_ctx), size_t(o.n_ctx)));
      if (o.progress) o.progress(c + 1, chunks);
    }
  }
  Imatrix m;
  m.entries = col.entries(model.config);
  if (!o.dataset.empty()) m.datasets.push_back(o.dataset);
  m.chunk_count = chunks;
  m.chunk_size = o.n_ctx;
  return m;
}

void imatrix_save(const Imatrix& m, const std::string& path) {
  GgufWriter w;
  w.set("general.type", GgufValue::string("imatrix"));
  w.set("imatrix.datasets", GgufValue::strings(m.datasets));
  w.set("imatrix.chunk_count", GgufValue::u32(uint32_t(m.chunk_count)));
  w.set("imatrix.chunk_size", GgufValue::u32(uint32_t(m.chunk_size)));
  for (const auto& [name, e] : m.entries) {  // std::map: sorted by name, as llama-imatrix writes them
    const int64_t n_mat = e.n_mat();
    Tensor sums = Tensor::empty(DType::F32, {n_mat, e.cols}), counts = Tensor::empty(DType::F32, {n_mat, 1});
    for (size_t i = 0; i < e.sums.size(); ++i) sums.f32()[i] = float(e.sums[i]);
    for (int64_t i = 0; i < n_mat; ++i) counts.f32()[i] = float(e.counts[size_t(i)]);
    w.add_tensor(name + ".in_sum2", sums);
    w.add_tensor(name + ".counts", counts);
  }
  w.write(path);
}

Imatrix imatrix_load(const std::string& path) {
  char magic[4] = {0, 0, 0, 0};
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError("cannot open imatrix file " + path);
    f.read(magic, 4);
  }
  return std::memcmp(magic, "GGUF", 4) == 0 ? load_gguf(path) : load_legacy(path);
}

std::map<std::string, std::vector<float>> imatrix_importance(const Imatrix& m) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, e] : m.entries) {
    std::vector<float>& v = out[name];
    v.resize(e.sums.size());
    if (m.legacy) {
      const int64_t ncall = e.counts.empty() ? 0 : e.counts[0];
      for (size_t i = 0; i < v.size(); ++i) v[i] = ncall > 0 ? float(e.sums[i]) / float(ncall) : float(e.sums[i]);
      continue;
    }
    for (int64_t mat = 0; mat < e.n_mat(); ++mat) {
      const float count = float(e.counts[size_t(mat)]);
      for (int64_t j = 0; j < e.cols; ++j) {
        const size_t i = size_t(mat * e.cols + j);
        // llama-quantize divides the stored f32 sum by the f32 count.
        v[i] = count > 0 ? float(e.sums[i]) / count : 1.0f;
      }
    }
  }
  return out;
}

}  // namespace tune
