// Importance matrices (imatrix) as llama.cpp's llama-imatrix computes and stores them: for every weight matrix
// of the blocks that the forward pass multiplies, the sum over tokens of x_j² for each input column j (the
// weight's ne[0] index) and the number of tokens; MoE expert tensors keep one sum vector and count per expert, fed
// only by the tokens routed to it. Files: llama.cpp's GGUF imatrix (general.type = "imatrix", imatrix.* keys,
// `<weight>.in_sum2` {cols, n_mat} and `<weight>.counts` {1, n_mat}, F32, sorted by name) is read and written;
// the legacy .dat format is read. Names and column order are GGUF's (names.h: gguf_tensor_name,
// gguf_column_order). Depends on model (forward observer), io/gguf.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace tune {

struct ImatrixEntry {
  int64_t cols = 0;
  std::vector<double> sums;     // (n_mat, cols): Σ x² per column; legacy files: mean x² · ncall
  std::vector<int64_t> counts;  // (n_mat): tokens seen per matrix (legacy files: {ncall})
  int64_t n_mat() const { return int64_t(counts.size()); }
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by GGUF weight name ("blk.0.attn_q.weight")
  std::vector<std::string> datasets;            // imatrix.datasets
  int64_t chunk_count = 0;                      // imatrix.chunk_count
  int64_t chunk_size = 0;                       // imatrix.chunk_size (tokens per chunk)
  bool legacy = false;                          // read from a .dat file
};

struct ImatrixOptions {
  int64_t n_ctx = 512;          // tokens per chunk; each chunk is one forward pass from position 0
  int64_t max_chunks = -1;      // -1: every whole chunk of the text
  bool process_output = false;  // also collect output.weight (llama-imatrix --process-output; not when tied)
  std::string dataset;          // recorded in imatrix.datasets ("" = none)
  std::function<void(int64_t done, int64_t total)> progress;  // after each chunk (null = quiet)
};

// Runs `model` over `ids` in chunks of n_ctx tokens (a trailing partial chunk is dropped, as llama-imatrix
// does) and collects every blk.* weight's input statistics. As llama-imatrix: products over fewer than 16 rows
// are skipped for dense weights (never for experts, which see only their routed tokens), and the count of a
// dense weight advances by its rows. ConfigError when the text is shorter than one chunk.
Imatrix imatrix_collect(const Model& model, std::span<const int32_t> ids, const ImatrixOptions& options);

// Writes llama-imatrix's GGUF format (temporary file + rename).
void imatrix_save(const Imatrix& m, const std::string& path);
// Reads a GGUF imatrix or a legacy .dat (told apart by the GGUF magic). FormatError naming the file for a
// malformed one, for `.in_sum2` without `.counts` (or the reverse) and for non-F32 tensors.
Imatrix imatrix_load(const std::string& path);

// What llama-quantize hands its quantizers: per weight, n_mat · cols values, the mean of x² per column and
// matrix (Σx² / count; 1 for a matrix that saw no token), or value / ncall for a legacy file.
std::map<std::string, std::vector<float>> imatrix_importance(const Imatrix& m);

}  // namespace tune
