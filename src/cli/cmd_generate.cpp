// tune generate --model DIR [--adapter DIR] --prompt STR [--chat] [--no-thinking] [--max-tokens N]
//   [--temperature T --top-k K --top-p P --min-p M --repetition-penalty R --seed S]: streams the continuation of a
// prompt (with --chat, the prompt is one user turn rendered by the model's chat template).
#include <cstdio>
#include <optional>

#include "cli/args.h"
#include "cli/commands.h"
#include "infer/generate.h"
#include "model/lora_peft.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tune::cli {

int cmd_generate(int argc, char** argv) {
  Args a("generate", argc, argv,
         {"--model", "--adapter", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p",
          "--repetition-penalty", "--seed", "--device"},
         {"--chat", "--no-thinking"});
  if (a.get("--device", "cpu") != "cpu")
    throw UnsupportedError("tune generate: --device " + a.get("--device", "") + " is not available yet",
                           "use --device cpu");
  const std::string dir = a.require("--model");
  const Model m = model_load(dir);
  std::optional<LoraAdapter> adapter;
  if (a.has("--adapter")) adapter = lora_load_peft(a.get("--adapter", ""), m);
  const Tokenizer tok = Tokenizer::from_dir(dir);
  std::string text = a.require("--prompt");
  if (a.has("--chat")) {
    ChatTemplateOptions opt;
    opt.add_generation_prompt = true;
    if (a.has("--no-thinking")) opt.extra["enable_thinking"] = false;
    const Json messages = Json::array({{{"role", "user"}, {"content", text}}});
    text = ChatTemplate::from_model_dir(dir).render(messages, nullptr, opt);
  }
  GenerateOptions g;
  g.max_tokens = a.get_int("--max-tokens", 128);
  g.sampler.temperature = a.get_double("--temperature", 0.0);
  g.sampler.top_k = a.get_int("--top-k", 0);
  g.sampler.top_p = a.get_double("--top-p", 1.0);
  g.sampler.min_p = a.get_double("--min-p", 0.0);
  g.sampler.repetition_penalty = a.get_double("--repetition-penalty", 1.0);
  g.sampler.seed = uint64_t(a.get_int("--seed", 0));
  for (const char* s : {"<|im_end|>", "<|endoftext|>"})
    if (tok.token_id(s) >= 0) g.stop_ids.push_back(tok.token_id(s));
  if (tok.eos_id() >= 0) g.stop_ids.push_back(tok.eos_id());
  // Print the newly decoded text of all ids so far; a trailing U+FFFD is a character still split across tokens.
  std::vector<int32_t> ids;
  size_t printed = 0;
  generate(m, adapter ? &*adapter : nullptr, tok.encode(text), g, [&](int32_t id) {
    ids.push_back(id);
    const std::string all = tok.decode(ids);
    if (all.size() >= 3 && all.compare(all.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
    std::fwrite(all.data() + printed, 1, all.size() - printed, stdout);
    std::fflush(stdout);
    printed = all.size();
  });
  std::printf("\n");
  return 0;
}

}  // namespace tune::cli
