// Decode speed of tune's CPU inference engine (infer/engine.h) on one GGUF (kept quantized) or model
// directory: a prompt of --prompt-tokens ids (the same ids bench/llama_decode.mjs feeds llama.cpp) in one
// batch, then
// --gen-tokens greedy decode steps. Prints one JSON line: prefill and decode tokens/s (wall clock; a decode
// step includes the argmax over the vocabulary, as llama.cpp's greedy sampler does).
//   bench_decode MODEL.gguf|DIR [--prompt-tokens 32] [--gen-tokens 64] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "model/model_gguf.h"
#include "quant/cpu_features.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int32_t argmax(const tune::Tensor& logits) {
  const float* p = logits.f32();
  return int32_t(std::max_element(p, p + logits.numel()) - p);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_decode MODEL.gguf|DIR [--prompt-tokens 32] [--gen-tokens 64] [--threads 2]\n");
    return 1;
  }
  const std::string path = argv[1];
  int64_t prompt_tokens = 32, gen_tokens = 64;
  int threads = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--prompt-tokens")
      prompt_tokens = std::atoll(argv[i + 1]);
    else if (k == "--gen-tokens")
      gen_tokens = std::atoll(argv[i + 1]);
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_decode: unknown option %s\n", k.c_str());
      return 1;
    }
  }
  try {
    tune::set_num_threads(threads);
    const tune::Model model =
        tune::is_gguf_path(path) ? tune::model_load_gguf(path, true) : tune::model_load(path);
    // Prompt ids: 1000 + 37 i (mod V), as bench/llama_decode.mjs.
    const int64_t V = model.config.vocab_size;
    std::vector<int32_t> prompt;
    for (int64_t i = 0; i < prompt_tokens; ++i) prompt.push_back(int32_t((1000 + 37 * i) % V));
    tune::Engine engine(model);
    auto t0 = std::chrono::steady_clock::now();
    int32_t next = argmax(engine.forward(prompt));
    const double prefill_s = seconds_since(t0);
    std::vector<int32_t> out;
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < gen_tokens; ++i) {
      const int32_t id = next;
      next = argmax(engine.forward({&id, 1}));
      out.push_back(next);
    }
    const double decode_s = seconds_since(t0);
    std::printf(
        "{\"engine\":\"tune\",\"model\":\"%s\",\"threads\":%d,\"simd\":\"%s\",\"prompt_tokens\":%lld,"
        "\"gen_tokens\":%lld,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,\"first_ids\":[%d,%d,%d,%d]}\n",
        path.c_str(), tune::num_threads(), tune::simd_level_name(tune::simd_level()),
        (long long)prompt_tokens, (long long)gen_tokens, double(prompt_tokens) / prefill_s,
        double(gen_tokens) / decode_s, out.size() > 0 ? out[0] : -1, out.size() > 1 ? out[1] : -1,
        out.size() > 2 ? out[2] : -1, out.size() > 3 ? out[3] : -1);
  } catch (const tune::Error& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
