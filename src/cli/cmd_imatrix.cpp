// tune imatrix --model DIR|FILE.gguf --data TEXT --out FILE.gguf [--ctx 512] [--chunks N] [--adapter DIR]
// [--process-output]: runs the model over the text in chunks of --ctx tokens and writes the importance matrix
// (per-column sums of squared activations and token counts of every block weight) in llama-imatrix's GGUF format,
// for tune export / tune quantize --imatrix and llama-quantize --imatrix. Progress goes to stderr.
#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/imatrix.h"
#include "export/merge.h"
#include "io/json.h"
#include "model/lora_peft.h"
#include "model/model_gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_gguf.h"

namespace tune::cli {

int cmd_imatrix(int argc, char** argv) {
  Args a("imatrix", argc, argv, {"--model", "--data", "--out", "--ctx", "--chunks", "--adapter"},
         {"--process-output"});
  const std::string path = a.require("--model"), data = a.require("--data"), out = a.require("--out");
  if (!is_gguf_path(out))
    std::fprintf(stderr, "note: %s is written in the GGUF imatrix format (llama.cpp expects a .gguf name)\n",
                 out.c_str());
  std::fprintf(stderr, "loading %s\n", path.c_str());
  Model m = is_gguf_path(path) ? model_load_gguf(path) : model_load(path);
  if (a.has("--adapter")) {
    const LoraAdapter ad = lora_load_peft(a.get("--adapter", ""), m);
    std::fprintf(stderr, "merging adapter %s (scale %.4g) in f32\n", a.get("--adapter", "").c_str(),
                 ad.config.scale());
    lora_merge_into(m, ad);
  }
  const Tokenizer tok = is_gguf_path(path) ? tokenizer_from_gguf(path) : Tokenizer::from_dir(path);
  const std::vector<int32_t> ids = tok.encode(read_file(data));
  ImatrixOptions o;
  o.n_ctx = a.get_int("--ctx", 512);
  o.max_chunks = a.get_int("--chunks", -1);
  o.process_output = a.has("--process-output");
  o.dataset = data;
  const auto t0 = std::chrono::steady_clock::now();
  o.progress = [&](int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "chunk %lld/%lld (%.1f s, %.0f tokens/s)\n", (long long)done, (long long)total, s,
                 double(done * o.n_ctx) / s);
  };
  std::fprintf(stderr, "%zu tokens, chunks of %lld\n", ids.size(), (long long)o.n_ctx);
  const Imatrix im = imatrix_collect(m, ids, o);
  imatrix_save(im, out);
  std::printf("wrote %s (%zu entries, %lld chunks of %lld tokens)\n", out.c_str(), im.entries.size(),
              (long long)im.chunk_count, (long long)im.chunk_size);
  return 0;
}

}  // namespace tune::cli
