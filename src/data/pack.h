// Fitting examples into rows of seq_len tokens: truncation policy, packing of several examples (documents)
// per row with per-document positions and attention, and the row layout the trainer reads. Depends on
// data/example.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/example.h"

namespace tune {

// kBestFit (default): best-fit decreasing, the "bfd" strategy TRL uses: examples by length, longest first,
//   each into the fullest row that still has room (a new row when none has); whole examples only, O(n log n).
//   Rows come out nearly full (no example is split, so no context is lost), and rows are shuffled per epoch.
// kSequential: in data order, a new row when the next example does not fit (keeps curricula and order).
// kNone: one example per row, padded.
enum class PackMode { kNone, kSequential, kBestFit };

// "none", "sequential", "bfd"; ConfigError otherwise.
PackMode pack_mode_parse(const std::string& name);
const char* pack_mode_name(PackMode mode);

// One row of seq_len tokens. Documents are laid out from t = 0; [length, seq_len) is padding (pad id,
// target kIgnoreIndex, one document of its own), which the trainer need not compute: per-document causal
// attention keeps real tokens from seeing it.
//
// Targets are stored already shifted, inside each document: targets[t] = labels[t + 1] of the same document,
// and kIgnoreIndex at the last token of every document and on padding. The trainer computes the loss of
// position t from logits[t] and targets[t] alone (ops/cross_entropy takes exactly that), so a document's
// first label is never predicted from the previous document and nothing is shifted across a boundary.
struct Row {
  std::vector<int32_t> input_ids;     // (seq_len)
  std::vector<int32_t> targets;       // (seq_len) next token within the document, or kIgnoreIndex
  std::vector<int32_t> position_ids;  // (seq_len) 0, 1, ... restarting at each document (RoPE positions)
  std::vector<int32_t> doc_start;     // (seq_len) index of the first token of t's document (attention_fwd)
  int32_t length = 0;                 // real tokens
  int32_t num_docs = 0;               // real documents

  int64_t trained_tokens() const;
};

// Within-document next-token targets of one example: (T) targets[t] = labels[t + 1], last = kIgnoreIndex.
std::vector<int32_t> example_targets(const Example& example);

struct FitCounts {
  int64_t truncated = 0;  // longer than seq_len, cut from the right
  int64_t dropped = 0;    // longer than seq_len with drop_long
  int64_t untrained = 0;  // dropped: no token left to train (e.g. a prompt longer than seq_len)
};

// Truncates (or, with drop_long, drops) examples longer than seq_len, then drops examples whose targets are
// all kIgnoreIndex. Keeps the order of the rest.
void examples_fit(std::vector<Example>& examples, int64_t seq_len, bool drop_long, FitCounts& counts);

// Groups examples (by their lengths, each <= seq_len) into rows: indices into `lengths`, in layout order.
std::vector<std::vector<int64_t>> pack_plan(std::span<const int64_t> lengths, int64_t seq_len, PackMode mode);

// Lays out the examples `docs` (indices into `examples`, total length <= seq_len) into one padded row.
Row row_build(const std::vector<Example>& examples, std::span<const int64_t> docs, int64_t seq_len,
              int32_t pad_id);

}  // namespace tune
