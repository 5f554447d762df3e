// Building the data set and its epoch order (see dataset.h). Records are rendered in parallel (Tokenizer and
// ChatTemplate are immutable); errors are reported in file order so the first bad line is the one named.
#include "data/dataset.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iterator>

#include "core/error.h"
#include "core/threads.h"

namespace tune {

namespace {

// Independent random streams derived from the one user seed.
enum Stream : uint64_t { kStreamMixSample = 1, kStreamInterleave = 2, kStreamEpoch = 3 };

Rng stream_rng(uint64_t seed, Stream stream, uint64_t index) {
  return Rng(seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ ((index + 1) * 0xBF58476D1CE4E5B9ull));
}

// Renders `records` into examples; a FormatError skips the record (skip_bad) or is rethrown, the first in
// file order. `kept`, when given, receives the record index of each example.
std::vector<Example> render_records(const std::vector<Record>& records, const Tokenizer& tokenizer,
                                    const ChatTemplate* chat_template, const ExampleOptions& options,
                                    bool skip_bad, SourceStats& source, DataStats& stats,
                                    std::vector<int64_t>* kept = nullptr) {
  const int64_t n = static_cast<int64_t>(records.size());
  std::vector<Example> examples(n);
  std::vector<std::exception_ptr> errors(n);
  parallel_for(
      n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          try {
            examples[i] = example_render(records[i], tokenizer, chat_template, options);
          } catch (const FormatError&) {
            errors[i] = std::current_exception();
          }
        }
      },
      16);
  size_t good = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!errors[i]) {
      if (static_cast<int64_t>(good) != i)
        examples[good] = std::move(examples[i]);  // a self-move would empty it
      ++good;
      if (kept) kept->push_back(i);
      continue;
    }
    if (!skip_bad) std::rethrow_exception(errors[i]);
    ++source.skipped;
    ++stats.skipped;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const FormatError& e) {
      if (stats.skip_reasons.size() < 5) stats.skip_reasons.push_back(e.what());
    }
  }
  examples.resize(good);
  return examples;
}

void add_file_stats(const JsonlFile& file, SourceStats& source, DataStats& stats) {
  source.path = file.path;
  source.format = file.format;
  source.records = static_cast<int64_t>(file.records.size());
  source.skipped = file.skipped;
  stats.skipped += file.skipped;
  for (const std::string& r : file.skip_reasons)
    if (stats.skip_reasons.size() < 5) stats.skip_reasons.push_back(r);
}

uint64_t fnv1a(uint64_t h, int64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xFF;
    h *= 0x100000001B3ull;
  }
  return h;
}

}  // namespace

uint64_t Dataset::fingerprint() const {
  uint64_t h = fnv1a(0xCBF29CE484222325ull, seq_len);
  h = fnv1a(h, pad_id);
  for (const Example& ex : examples) {
    h = fnv1a(h, static_cast<int64_t>(ex.ids.size()));
    for (size_t t = 0; t < ex.ids.size(); ++t)
      h = fnv1a(h, (int64_t{ex.ids[t]} << 32) ^ uint32_t(ex.labels[t]));
  }
  for (const std::vector<int64_t>& row : rows) {
    h = fnv1a(h, static_cast<int64_t>(row.size()));
    for (int64_t d : row) h = fnv1a(h, d);
  }
  return h;
}

Dataset dataset_build(const std::vector<std::string>& paths, const Tokenizer& tokenizer,
                      const ChatTemplate* chat_template, const DatasetOptions& options) {
  if (options.seq_len < 2)
    throw ConfigError("--seq-len " + std::to_string(options.seq_len) + " is too short",
                      "use at least 2 tokens");
  if (paths.empty()) throw ConfigError("no data files given", "--data FILE.jsonl");
  Dataset ds;
  ds.seq_len = options.seq_len;
  ds.pad_id = tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : std::max(tokenizer.eos_id(), 0);
  DataStats& stats = ds.stats;
  ExampleOptions eopt;
  eopt.train_on_prompt = options.train_on_prompt;
  eopt.template_extra = options.template_extra;
  FitCounts fit;
  // Fits one source's examples into seq_len and appends them.
  auto add = [&](std::vector<Example> ex, SourceStats& source) {
    stats.records += static_cast<int64_t>(ex.size());
    examples_fit(ex, ds.seq_len, options.drop_long, fit);
    source.examples = static_cast<int64_t>(ex.size());
    std::move(ex.begin(), ex.end(), std::back_inserter(ds.examples));
    stats.sources.push_back(source);
  };

  for (const std::string& path : paths) {
    const JsonlFile file = jsonl_read(path, {options.format, options.skip_bad});
    SourceStats source;
    add_file_stats(file, source, stats);
    add(render_records(file.records, tokenizer, chat_template, eopt, options.skip_bad, source, stats),
        source);
  }

  if (!options.mixes.empty()) {
    std::vector<double> fractions;
    for (const MixSpec& m : options.mixes) fractions.push_back(m.fraction);
    const std::vector<int64_t> counts = mix_counts(static_cast<int64_t>(ds.examples.size()), fractions);
    for (size_t i = 0; i < options.mixes.size(); ++i) {
      JsonlFile file = jsonl_read(options.mixes[i].path, {DataFormat::kAuto, options.skip_bad});
      SourceStats source;
      add_file_stats(file, source, stats);
      if (file.records.empty() && counts[i] > 0)
        throw ConfigError(options.mixes[i].path + ": a mix file without records");
      Rng rng = stream_rng(options.seed, kStreamMixSample, i);
      const std::vector<int64_t> sample = mix_sample(source.records, counts[i], rng);
      // Render each drawn record once, then repeat its example as often as it was drawn (sample is sorted).
      std::vector<Record> drawn;
      std::vector<int64_t> repeats;
      for (size_t s = 0; s < sample.size(); ++s) {
        if (s > 0 && sample[s] == sample[s - 1]) {
          ++repeats.back();
          continue;
        }
        drawn.push_back(std::move(file.records[sample[s]]));
        repeats.push_back(1);
      }
      std::vector<int64_t> kept;
      const std::vector<Example> rendered =
          render_records(drawn, tokenizer, chat_template, eopt, options.skip_bad, source, stats, &kept);
      std::vector<Example> ex;
      for (size_t k = 0; k < rendered.size(); ++k) ex.insert(ex.end(), repeats[kept[k]], rendered[k]);
      add(std::move(ex), source);
    }
    // Interleave the mixes with the main data.
    Rng rng = stream_rng(options.seed, kStreamInterleave, 0);
    const std::vector<int64_t> perm = seeded_permutation(static_cast<int64_t>(ds.examples.size()), rng);
    std::vector<Example> shuffled;
    shuffled.reserve(perm.size());
    for (int64_t p : perm) shuffled.push_back(std::move(ds.examples[p]));
    ds.examples = std::move(shuffled);
  }

  std::vector<int64_t> lengths;
  for (const Example& ex : ds.examples) {
    lengths.push_back(static_cast<int64_t>(ex.ids.size()));
    stats.tokens += lengths.back();
    stats.trained_tokens +=
        std::count_if(ex.labels.begin() + 1, ex.labels.end(), [](int32_t l) { return l != kIgnoreIndex; });
  }
  ds.rows = pack_plan(lengths, ds.seq_len, options.pack);
  stats.examples = static_cast<int64_t>(ds.examples.size());
  stats.truncated = fit.truncated;
  stats.dropped = fit.dropped + fit.untrained;
  stats.rows = ds.num_rows();
  stats.padding = stats.rows * ds.seq_len - stats.tokens;
  return ds;
}

std::vector<int64_t> epoch_order(int64_t num_rows, uint64_t seed, int64_t epoch) {
  Rng rng = stream_rng(seed, kStreamEpoch, static_cast<uint64_t>(epoch));
  return seeded_permutation(num_rows, rng);
}

RowSampler::RowSampler(int64_t num_rows, uint64_t seed, DataCursor start)
    : num_rows_(num_rows), seed_(seed), cursor_(start) {
  if (num_rows <= 0)
    throw ConfigError("the data set has no rows to train on",
                      "check the data statistics (tune data preview): records skipped or dropped?");
  if (cursor_.epoch < 0 || cursor_.index < 0 || cursor_.index > num_rows)
    throw ConfigError("data cursor (epoch " + std::to_string(cursor_.epoch) + ", index " +
                      std::to_string(cursor_.index) + ") is outside a data set of " +
                      std::to_string(num_rows) + " rows");
  order_ = epoch_order(num_rows_, seed_, cursor_.epoch);
}

int64_t RowSampler::next() {
  if (cursor_.index == num_rows_) {
    ++cursor_.epoch;
    cursor_.index = 0;
    order_ = epoch_order(num_rows_, seed_, cursor_.epoch);
  }
  return order_[cursor_.index++];
}

Json data_cursor_to_json(const DataCursor& cursor, uint64_t fingerprint) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fingerprint));
  return Json{{"epoch", cursor.epoch}, {"index", cursor.index}, {"fingerprint", hex}};
}

DataCursor data_cursor_from_json(const Json& j, uint64_t fingerprint) {
  const char* hint = "a data cursor is {\"epoch\": N, \"index\": N, \"fingerprint\": \"hex\"}";
  if (!j.is_object() || !j.contains("epoch") || !j["epoch"].is_number_integer() || !j.contains("index") ||
      !j["index"].is_number_integer() || !j.contains("fingerprint") || !j["fingerprint"].is_string())
    throw FormatError("data cursor: missing or mistyped field", hint);
  const Json expected = data_cursor_to_json({}, fingerprint);
  if (j["fingerprint"] != expected["fingerprint"])
    throw ConfigError("the training data differ from the checkpoint's (fingerprint " +
                          j["fingerprint"].get<std::string>() + ", now " +
                          expected["fingerprint"].get<std::string>() + ")",
                      "resume with the same data files, --seq-len, packing, mixes and seed");
  return DataCursor{j["epoch"].get<int64_t>(), j["index"].get<int64_t>()};
}

}  // namespace tune
