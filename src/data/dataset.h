// The training data set: JSONL files (plus replay mixes) -> examples -> truncation -> packed rows, with the
// statistics a user checks before training, and a seeded epoch order with a cursor for exact resume.
// Depends on data/ (jsonl, example, pack, mix) and tokenizer/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/example.h"
#include "data/jsonl.h"
#include "data/mix.h"
#include "data/pack.h"
#include "io/json.h"

namespace tune {

struct DatasetOptions {
  DataFormat format = DataFormat::kAuto;  // of the main files; mix files are always detected
  int64_t seq_len = 2048;
  PackMode pack = PackMode::kBestFit;
  bool train_on_prompt = false;  // chat records: loss on every token, not only the assistant turns
  bool skip_bad = false;         // skip (and count) bad records instead of failing on the first
  bool drop_long = false;        // drop examples longer than seq_len instead of truncating them
  uint64_t seed = 0;             // mix sampling, interleaving and epoch order
  std::vector<MixSpec> mixes;
  Json template_extra = Json::object();  // extra chat-template variables, e.g. {"enable_thinking": false}
};

struct SourceStats {
  std::string path;
  DataFormat format = DataFormat::kAuto;
  int64_t records = 0;   // good records in the file
  int64_t skipped = 0;   // bad records skipped
  int64_t examples = 0;  // examples it put into the rows (a mix: its sample, repeats included)
};

struct DataStats {
  int64_t records = 0;         // records rendered: all good main records plus the mix samples
  int64_t skipped = 0;         // bad records skipped (skip_bad), at reading or at rendering
  int64_t examples = 0;        // examples in the rows
  int64_t tokens = 0;          // real tokens in the rows
  int64_t trained_tokens = 0;  // tokens whose target carries loss
  int64_t truncated = 0;       // examples cut to seq_len
  int64_t dropped = 0;         // examples dropped: too long with drop_long, or nothing left to train
  int64_t rows = 0;
  int64_t padding = 0;  // pad tokens: rows * seq_len - tokens
  std::vector<SourceStats> sources;
  std::vector<std::string> skip_reasons;  // the first few, "FILE:LINE: reason (hint: ...)"
};

struct Dataset {
  int64_t seq_len = 0;
  int32_t pad_id = 0;
  std::vector<Example> examples;           // truncated, each with a trained token
  std::vector<std::vector<int64_t>> rows;  // indices into examples, in layout order
  DataStats stats;

  int64_t num_rows() const { return static_cast<int64_t>(rows.size()); }
  // Row i laid out (input ids, shifted targets, positions, doc_start; see pack.h).
  Row row(int64_t i) const { return row_build(examples, rows[i], seq_len, pad_id); }
  // FNV-1a over seq_len, the examples and the plan: a checkpoint's cursor is only valid on the same data.
  uint64_t fingerprint() const;
};

// Reads, renders (in parallel, results in file order), fits and packs. The pad id is the tokenizer's pad,
// else its EOS, else 0. `chat_template` may be null for text/tokens data. Errors: FormatError for a bad
// record (unless skip_bad), IoError for an unreadable file, ConfigError for bad options.
Dataset dataset_build(const std::vector<std::string>& paths, const Tokenizer& tokenizer,
                      const ChatTemplate* chat_template, const DatasetOptions& options);

// Position in the stream of rows: epoch and index within that epoch's order.
struct DataCursor {
  int64_t epoch = 0;
  int64_t index = 0;
};

// Row order of one epoch: a permutation of [0, num_rows) seeded by (seed, epoch), the same everywhere.
std::vector<int64_t> epoch_order(int64_t num_rows, uint64_t seed, int64_t epoch);

// Hands out row indices epoch after epoch, each epoch in its own seeded order. Restoring a saved cursor (with
// the same data and seed) continues with exactly the rows an uninterrupted run would have seen.
class RowSampler {
 public:
  // ConfigError when there are no rows.
  RowSampler(int64_t num_rows, uint64_t seed, DataCursor start = {});
  int64_t next();
  // The position of the row next() returns next.
  const DataCursor& cursor() const { return cursor_; }

 private:
  int64_t num_rows_;
  uint64_t seed_;
  DataCursor cursor_;
  std::vector<int64_t> order_;  // of cursor_.epoch
};

// {"epoch", "index", "fingerprint"} (the fingerprint as a hex string: JSON numbers lose 64-bit integers in
// some readers).
Json data_cursor_to_json(const DataCursor& cursor, uint64_t fingerprint);
// ConfigError when the fingerprint differs: the data or its options changed since the checkpoint.
DataCursor data_cursor_from_json(const Json& j, uint64_t fingerprint);

}  // namespace tune
