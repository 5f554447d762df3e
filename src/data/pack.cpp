// Truncation, packing plans and row layout (see pack.h for the row format and the packing strategies).
#include "data/pack.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.h"

namespace tune {

PackMode pack_mode_parse(const std::string& name) {
  if (name == "none") return PackMode::kNone;
  if (name == "sequential") return PackMode::kSequential;
  if (name == "bfd") return PackMode::kBestFit;
  throw ConfigError("unknown packing '" + name + "'", "use bfd (best-fit decreasing), sequential or none");
}

const char* pack_mode_name(PackMode mode) {
  switch (mode) {
    case PackMode::kNone:
      return "none";
    case PackMode::kSequential:
      return "sequential";
    case PackMode::kBestFit:
      return "bfd";
  }
  return "?";
}

int64_t Row::trained_tokens() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t != kIgnoreIndex; });
}

std::vector<int32_t> example_targets(const Example& example) {
  const size_t n = example.ids.size();
  std::vector<int32_t> targets(n, kIgnoreIndex);
  for (size_t t = 0; t + 1 < n; ++t) targets[t] = example.labels[t + 1];
  return targets;
}

void examples_fit(std::vector<Example>& examples, int64_t seq_len, bool drop_long, FitCounts& counts) {
  TUNE_CHECK(seq_len >= 2) << "seq_len " << seq_len;
  size_t kept = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    Example& ex = examples[i];
    TUNE_CHECK(ex.ids.size() == ex.labels.size())
        << ex.ids.size() << " ids, " << ex.labels.size() << " labels";
    if (static_cast<int64_t>(ex.ids.size()) > seq_len) {
      if (drop_long) {
        ++counts.dropped;
        continue;
      }
      ex.ids.resize(seq_len);
      ex.labels.resize(seq_len);
      ++counts.truncated;
    }
    // labels[0] is never a target: nothing before the first token predicts it.
    if (std::all_of(ex.labels.begin() + std::min<size_t>(1, ex.labels.size()), ex.labels.end(),
                    [](int32_t l) { return l == kIgnoreIndex; })) {
      ++counts.untrained;
      continue;
    }
    if (kept != i) examples[kept] = std::move(ex);  // a self-move would empty the vectors
    ++kept;
  }
  examples.resize(kept);
}

std::vector<std::vector<int64_t>> pack_plan(std::span<const int64_t> lengths, int64_t seq_len,
                                            PackMode mode) {
  const int64_t n = static_cast<int64_t>(lengths.size());
  for (int64_t len : lengths)
    TUNE_CHECK(len > 0 && len <= seq_len) << "length " << len << ", seq_len " << seq_len;
  std::vector<std::vector<int64_t>> rows;
  switch (mode) {
    case PackMode::kNone:
      for (int64_t i = 0; i < n; ++i) rows.push_back({i});
      break;
    case PackMode::kSequential: {
      int64_t used = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (rows.empty() || used + lengths[i] > seq_len) {
          rows.emplace_back();
          used = 0;
        }
        rows.back().push_back(i);
        used += lengths[i];
      }
      break;
    }
    case PackMode::kBestFit: {
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
      // Free space -> row, smallest first; among equal space the row opened first (multimap keeps insertion
      // order of equal keys), so the plan is deterministic.
      std::multimap<int64_t, int64_t> free_space;
      for (int64_t i : order) {
        auto it = free_space.lower_bound(lengths[i]);
        int64_t row, space;
        if (it == free_space.end()) {
          row = static_cast<int64_t>(rows.size());
          rows.emplace_back();
          space = seq_len;
        } else {
          row = it->second;
          space = it->first;
          free_space.erase(it);
        }
        rows[row].push_back(i);
        if (space - lengths[i] > 0) free_space.emplace(space - lengths[i], row);
      }
      break;
    }
  }
  return rows;
}

Row row_build(const std::vector<Example>& examples, std::span<const int64_t> docs, int64_t seq_len,
              int32_t pad_id) {
  Row r;
  r.input_ids.resize(seq_len);
  r.targets.resize(seq_len);
  r.position_ids.resize(seq_len);
  r.doc_start.resize(seq_len);
  int64_t t = 0;
  for (int64_t d : docs) {
    const Example& ex = examples[d];
    const std::vector<int32_t> targets = example_targets(ex);
    const int64_t n = static_cast<int64_t>(ex.ids.size());
    TUNE_CHECK(t + n <= seq_len) << "documents of " << t + n << " tokens in a row of " << seq_len;
    for (int64_t i = 0; i < n; ++i) {
      r.input_ids[t + i] = ex.ids[i];
      r.targets[t + i] = targets[i];
      r.position_ids[t + i] = static_cast<int32_t>(i);
      r.doc_start[t + i] = static_cast<int32_t>(t);
    }
    t += n;
  }
  r.length = static_cast<int32_t>(t);
  r.num_docs = static_cast<int32_t>(docs.size());
  for (int64_t i = t; i < seq_len; ++i) {
    r.input_ids[i] = pad_id;
    r.targets[i] = kIgnoreIndex;
    r.position_ids[i] = static_cast<int32_t>(i - t);
    r.doc_start[i] = static_cast<int32_t>(t);
  }
  return r;
}

}  // namespace tune
