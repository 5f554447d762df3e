// tune chat --model FILE.gguf|DIR [--system STR] [--no-thinking] [--max-tokens N] [--temperature T --top-k K
//   --top-p P --min-p M --repeat-penalty R --seed S] [--threads N] [--ctx N] [--adapter DIR]: an interactive
//   chat
// over stdin. Each line is a user turn; the reply streams to stdout, one line per turn. The conversation is
// rendered by the model's chat template (the directory's, or the GGUF's tokenizer.chat_template) with its
// whole history; the KV cache keeps the common prefix, so a turn only computes its new tokens. /reset forgets
// the history, /exit (or the end of stdin) ends the chat. With a terminal on stdin a "> " prompt is shown.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/infer_model.h"

namespace tune::cli {

int cmd_chat(int argc, char** argv) {
  Args a("chat", argc, argv, infer_value_flags(), infer_bool_flags());
  infer_setup(a, "chat");
  const InferModel m = infer_model_load(a);
  if (!m.chat_template)
    throw ConfigError(
        a.require("--model") + ": the model has no chat template",
        "tune chat needs chat_template.jinja / tokenizer_config.json or a GGUF tokenizer.chat_template");
  const GenerateOptions g = infer_generate_options(a, m);
  const bool no_thinking = a.has("--no-thinking"), interactive = ::isatty(0);
  nlohmann::json messages = nlohmann::json::array();
  auto start = [&] {
    messages = nlohmann::json::array();
    if (a.has("--system")) messages.push_back({{"role", "system"}, {"content", a.get("--system", "")}});
  };
  start();
  Generator gen(m.model, m.adapter ? &*m.adapter : nullptr, infer_engine_options(a));
  std::string line;
  for (;;) {
    if (interactive) {
      std::printf("> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit") break;
    if (line == "/reset") {
      start();
      gen.reset();
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    TextStream out(m.tokenizer);
    gen.generate(m.tokenizer.encode(infer_render_chat(m, messages, no_thinking)), g,
                 [&](int32_t id) { out.push(id); });
    std::printf("\n");
    std::fflush(stdout);
    messages.push_back({{"role", "assistant"}, {"content", out.text()}});
  }
  return 0;
}

}  // namespace tune::cli
