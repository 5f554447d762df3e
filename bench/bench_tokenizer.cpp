// Single-thread encode throughput of tune's tokenizer on tests/data/tokenizer/corpus.txt, chunk by chunk with
// the chunking of the reference file (tools/reference/make_tokenizer_refs.py, which times HF `tokenizers` the
// same way), and a check that the ids equal the reference. Prints JSON. Depends on tokenizer/tokenizer.h.
// Usage: bench_tokenizer MODEL_DIR [CORPUS] [REFS_BIN] [REPS]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "../tests/tokenizer/tokenizer_refs.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [CORPUS] [REFS_BIN] [REPS]\n", argv[0]);
    return 2;
  }
  try {
    const std::string corpus_path = argc > 2 ? argv[2] : "tests/data/tokenizer/corpus.txt";
    const std::string refs_path = argc > 3 ? argv[3] : "tests/data/tokenizer/tokenizer_refs_qwen3.bin";
    const int reps = argc > 4 ? std::atoi(argv[4]) : 3;

    auto t0 = std::chrono::steady_clock::now();
    const tune::Tokenizer tok = tune::Tokenizer::from_dir(argv[1]);
    const double load_s = seconds_since(t0);
    const std::string corpus = tune::tokenizer_refs::read_file(corpus_path);
    const tune::tokenizer_refs::Refs refs = tune::tokenizer_refs::read(refs_path);
    const std::vector<std::string_view> chunks = tune::tokenizer_refs::chunks(corpus, refs);
    if (refs.chunk_offsets.back() != corpus.size())
      throw tune::FormatError(refs_path + ": not made from " + corpus_path);

    std::vector<double> times;
    std::vector<std::vector<int32_t>> ids(chunks.size());
    for (int r = 0; r < reps; ++r) {
      t0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < chunks.size(); ++i) ids[i] = tok.encode(chunks[i]);
      times.push_back(seconds_since(t0));
    }
    size_t tokens = 0, mismatched_chunks = 0;
    for (size_t k = 0; k < chunks.size(); ++k)
      mismatched_chunks += refs.has_record[k] && ids[k] != refs.ids[k];
    for (const auto& v : ids) tokens += v.size();
    t0 = std::chrono::steady_clock::now();
    const size_t whole_tokens = tok.encode(corpus).size();
    const double whole_s = seconds_since(t0);

    double best = times[0];
    for (double t : times) best = std::min(best, t);
    const double mb = corpus.size() / 1e6;
    std::printf(
        "{\"tool\": \"tune\", \"corpus_bytes\": %zu, \"chunks\": %zu, \"tokens\": %zu, \"load_s\": %.4f, "
        "\"first_s\": %.4f, \"best_s\": %.4f, \"mb_per_s_first\": %.2f, \"mb_per_s_best\": %.2f, "
        "\"whole_corpus_one_call_s\": %.4f, \"whole_corpus_tokens\": %zu, \"reference_chunks\": %zu, "
        "\"mismatched_chunks\": %zu}\n",
        corpus.size(), chunks.size(), tokens, load_s, times[0], best, mb / times[0], mb / best, whole_s,
        whole_tokens, static_cast<size_t>(std::count(refs.has_record.begin(), refs.has_record.end(), true)),
        mismatched_chunks);
    return mismatched_chunks == 0 ? 0 : 1;
  } catch (const tune::Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
