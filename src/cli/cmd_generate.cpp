// tune generate --model FILE.gguf|DIR --prompt STR [--chat [--system STR] [--no-thinking]] [--max-tokens N]
//   [--temperature T --top-k K --top-p P --min-p M --repeat-penalty R --seed S] [--threads N] [--ctx N]
//   [--adapter DIR] [--stats]: streams the continuation of a prompt to stdout as it is made (flushed per
//   token);
// with --chat the prompt is one user turn rendered by the model's chat template. Runs the KV-cache engine
// (infer/engine.h): a GGUF keeps its matrices in their file types and computes as llama.cpp's CPU backend
// does.
// --stats prints prefill and decode speeds to stderr.
#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/infer_model.h"

namespace tune::cli {

int cmd_generate(int argc, char** argv) {
  std::vector<std::string> values = infer_value_flags(), bools = infer_bool_flags();
  values.push_back("--prompt");
  bools.insert(bools.end(), {"--chat", "--stats"});
  Args a("generate", argc, argv, values, bools);
  infer_setup(a, "generate");
  const std::string prompt = a.require("--prompt");
  const InferModel m = infer_model_load(a);
  std::string text = prompt;
  if (a.has("--chat")) {
    nlohmann::json messages = nlohmann::json::array();
    if (a.has("--system")) messages.push_back({{"role", "system"}, {"content", a.get("--system", "")}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    text = infer_render_chat(m, messages, a.has("--no-thinking"));
  }
  const GenerateOptions g = infer_generate_options(a, m);
  const std::vector<int32_t> ids = m.tokenizer.encode(text);
  Generator gen(m.model, m.adapter ? &*m.adapter : nullptr, infer_engine_options(a));
  TextStream out(m.tokenizer);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point t1 = t0;
  int64_t n = 0;
  gen.generate(ids, g, [&](int32_t id) {
    if (n++ == 0) t1 = Clock::now();
    out.push(id);
  });
  const Clock::time_point t2 = Clock::now();
  std::printf("\n");
  if (a.has("--stats")) {
    const double prefill = std::chrono::duration<double>(t1 - t0).count();
    const double decode = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr,
                 "prompt %zu tokens in %.3f s (%.1f tok/s), generated %lld tokens, %.1f tok/s decoding\n",
                 ids.size(), prefill, prefill > 0 ? double(ids.size()) / prefill : 0.0, (long long)n,
                 n > 1 && decode > 0 ? double(n - 1) / decode : 0.0);
  }
  return 0;
}

}  // namespace tune::cli
