// tune logits --model DIR|FILE.gguf [--dequantize] [--adapter DIR] --ids "1 2 3"|@FILE [--out FILE.safetensors]
// [--top K]: the logits of one sequence (with a PEFT LoRA adapter applied when given), written as tensor `logits`
// (f32, [T, V]); prints the top-K next tokens of the last position. A GGUF runs on the inference engine
// (infer/engine.h): its matrices stay in their file types and everything is computed as llama.cpp's CPU backend
// does (f16 KV cache and flash attention included); --dequantize computes with the f32 reference forward over
// the dequantized weights instead.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <optional>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "infer/engine.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/lora_peft.h"
#include "model/model_gguf.h"

namespace tune::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& spec) {
  const bool from_file = !spec.empty() && spec[0] == '@';
  const std::string text = from_file ? read_file(spec.substr(1)) : spec;
  const std::string where = from_file ? spec.substr(1) : "--ids";
  std::vector<int32_t> ids;
  std::string tok;
  std::istringstream is(text);
  while (is >> tok) {
    for (char& ch : tok)
      if (ch == ',') ch = ' ';
    std::istringstream parts(tok);
    std::string p;
    while (parts >> p) {
      size_t n = 0;
      long long v = -1;
      try {
        v = std::stoll(p, &n);
      } catch (const std::exception&) {
      }
      if (n != p.size() || v < 0 || v > INT32_MAX)
        throw ConfigError(where + ": '" + p + "' is not a token id", "ids are non-negative integers");
      ids.push_back(int32_t(v));
    }
  }
  if (ids.empty()) throw ConfigError(where + ": no token ids");
  return ids;
}

}  // namespace

int cmd_logits(int argc, char** argv) {
  Args a("logits", argc, argv, {"--model", "--adapter", "--ids", "--out", "--top", "--device"},
         {"--dequantize"});
  if (a.get("--device", "cpu") != "cpu")
    throw UnsupportedError("tune logits: --device " + a.get("--device", "") + " is not available yet",
                           "use --device cpu");
  const std::vector<int32_t> ids = parse_ids(a.require("--ids"));
  const std::string model_path = a.require("--model");
  const bool engine = is_gguf_path(model_path) && !a.has("--dequantize");
  const Model m = is_gguf_path(model_path) ? model_load_gguf(model_path, engine) : model_load(model_path);
  std::optional<LoraAdapter> adapter;
  if (a.has("--adapter")) adapter = lora_load_peft(a.get("--adapter", ""), m);
  const LoraAdapter* lora = adapter ? &*adapter : nullptr;
  const Tensor logits = engine ? Engine(m, {}, lora).forward(ids, int64_t(ids.size())) : model_logits(m, ids, lora);
  const int64_t T = logits.size(0), V = logits.size(1);
  if (a.has("--out")) {
    safetensors_write(a.get("--out", ""), {{"logits", logits}}, {{"format", "pt"}});
    std::printf("wrote logits [%lld, %lld] to %s\n", (long long)T, (long long)V, a.get("--out", "").c_str());
  }
  const int64_t top = std::min<int64_t>(a.get_int("--top", 5), V);
  const float* last = logits.f32() + (T - 1) * V;
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + top, order.end(),
                    [&](int32_t x, int32_t y) { return last[x] > last[y]; });
  std::printf("next-token logits after %lld tokens (top %lld):\n", (long long)T, (long long)top);
  for (int64_t i = 0; i < top; ++i)
    std::printf("  id %-8d %.5f\n", order[size_t(i)], double(last[order[size_t(i)]]));
  return 0;
}

}  // namespace tune::cli
