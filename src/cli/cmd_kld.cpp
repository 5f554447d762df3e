// tune kld --base DIR|FILE.gguf --model FILE.gguf|DIR [--model ...] --data TEXT [--ctx 512] [--chunks N] [--json]:
// KL divergence of (quantized) models against their base over a text, with llama-perplexity --kl-divergence's
// definitions (the base runs once; each --model is loaded in turn); and
// tune perplexity --model DIR|FILE.gguf --data TEXT [--ctx 512] [--chunks N] [--json].
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/kld.h"
#include "io/json.h"
#include "model/forward.h"
#include "model/model_gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_gguf.h"

namespace tune::cli {

namespace {

Model load_any(const std::string& path) { return is_gguf_path(path) ? model_load_gguf(path) : model_load(path); }
Tokenizer tokenizer_any(const std::string& path) {
  return is_gguf_path(path) ? tokenizer_from_gguf(path) : Tokenizer::from_dir(path);
}

LogitsFn logits_of(const Model& m) {
  return [&m](std::span<const int32_t> chunk) {
    const Tensor l = model_logits(m, chunk);
    return std::vector<float>(l.f32(), l.f32() + l.numel());
  };
}

void print_stats(const KldStats& st) {
  std::printf("tokens scored:   %lld\n", (long long)st.tokens);
  std::printf("mean KLD:        %.6f +- %.6f\n", st.mean_kld, st.mean_kld_err);
  std::printf("median KLD:      %.6f\n99.0%% KLD:       %.6f\n99.9%% KLD:       %.6f\nmax KLD:         %.6f\n",
              st.median_kld, st.p99_kld, st.p999_kld, st.max_kld);
  std::printf("same top token:  %.2f%%\n", 100.0 * st.top1_agreement);
  std::printf("PPL(base):       %.4f\nPPL(model):      %.4f\nPPL ratio:       %.6f\nRMS dp:          %.4f%%\n",
              st.ppl_base, st.ppl_model, st.ppl_ratio, 100.0 * st.rms_dp);
}

}  // namespace

int cmd_kld(int argc, char** argv) {
  Args a("kld", argc, argv, {"--base", "--model", "--data", "--ctx", "--chunks"}, {"--json"});
  const std::string base_path = a.require("--base");
  a.require("--model");
  const std::vector<std::string> models = a.get_all("--model");
  const std::vector<int32_t> ids = tokenizer_any(base_path).encode(read_file(a.require("--data")));
  KldBase kb;
  {
    const Model base = load_any(base_path);
    std::fprintf(stderr, "base %s: %zu tokens\n", base_path.c_str(), ids.size());
    kb = kld_base_run(ids, a.get_int("--ctx", 512), base.config.vocab_size, logits_of(base), a.get_int("--chunks", -1));
  }
  Json all = Json::array();
  for (const std::string& path : models) {
    const Model model = load_any(path);
    if (model.config.vocab_size != kb.vocab)
      throw ConfigError("tune kld: the base has " + std::to_string(kb.vocab) + " tokens and " + path + " " +
                            std::to_string(model.config.vocab_size),
                        "compare a model with its own base");
    const KldStats st = kld_stats(kld_compare(kb, logits_of(model)));
    std::fprintf(stderr, "%s: mean KLD %.6f, same top %.2f%%\n", path.c_str(), st.mean_kld, 100.0 * st.top1_agreement);
    if (a.has("--json")) {
      Json j = st.to_json();
      if (models.size() > 1) j["model"] = path;
      all.push_back(j);
      continue;
    }
    if (models.size() > 1) std::printf("%s== %s\n", path == models.front() ? "" : "\n", path.c_str());
    print_stats(st);
    std::fflush(stdout);
  }
  if (a.has("--json")) std::printf("%s\n", (models.size() > 1 ? all : all[0]).dump().c_str());
  return 0;
}

int cmd_perplexity(int argc, char** argv) {
  Args a("perplexity", argc, argv, {"--model", "--data", "--ctx", "--chunks"}, {"--json"});
  const std::string path = a.require("--model");
  const Model m = load_any(path);
  const std::vector<int32_t> ids = tokenizer_any(path).encode(read_file(a.require("--data")));
  const PerplexityResult r =
      perplexity_run(ids, a.get_int("--ctx", 512), m.config.vocab_size, logits_of(m), a.get_int("--chunks", -1));
  if (a.has("--json")) {
    std::printf("%s\n", Json({{"tokens", r.tokens}, {"ppl", r.ppl}}).dump().c_str());
  } else {
    std::printf("tokens scored: %lld\nperplexity:    %.4f\n", (long long)r.tokens, r.ppl);
  }
  return 0;
}

}  // namespace tune::cli
