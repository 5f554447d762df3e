// tune data preview: the first records of a training file as the model will see them, trained tokens marked
// ([[...]], or green on a terminal), and the statistics of the whole file after truncation and packing.
// A thin shell over data/ (jsonl_read, example_render, dataset_build).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "data/dataset.h"

namespace tune::cli {

namespace {

bool is_chat(DataFormat f) {
  return f == DataFormat::kMessages || f == DataFormat::kShareGpt || f == DataFormat::kAlpaca;
}

std::string percent(int64_t part, int64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * double(part) / double(whole) : 0.0);
  return buf;
}

// The example's first `shown` tokens, runs of trained tokens (label != -100) between markers.
std::string marked_text(const Example& ex, size_t shown, const Tokenizer& tokenizer, bool color) {
  const char* open = color ? "\x1b[32m" : "[[";
  const char* close = color ? "\x1b[0m" : "]]";
  std::string out;
  for (size_t i = 0; i < shown;) {
    const bool trained = ex.labels[i] != kIgnoreIndex;
    size_t j = i;
    while (j < shown && (ex.labels[j] != kIgnoreIndex) == trained) ++j;
    const std::string run = tokenizer.decode(std::span<const int32_t>(ex.ids.data() + i, j - i));
    out += trained ? open + run + close : run;
    i = j;
  }
  return out;
}

void print_stats(const DataStats& s, const DatasetOptions& o) {
  std::printf("records:    %lld (%lld skipped)\n", (long long)s.records, (long long)s.skipped);
  std::printf("examples:   %lld (%lld truncated, %lld dropped)\n", (long long)s.examples,
              (long long)s.truncated, (long long)s.dropped);
  std::printf("tokens:     %lld, %lld trained (%s)\n", (long long)s.tokens, (long long)s.trained_tokens,
              percent(s.trained_tokens, s.tokens).c_str());
  std::printf("rows:       %lld of %lld tokens (packing %s), %lld padding (%s)\n", (long long)s.rows,
              (long long)o.seq_len, pack_mode_name(o.pack), (long long)s.padding,
              percent(s.padding, s.rows * o.seq_len).c_str());
  for (const SourceStats& src : s.sources)
    std::printf("source:     %s (%s): %lld records, %lld skipped, %lld examples\n", src.path.c_str(),
                data_format_name(src.format), (long long)src.records, (long long)src.skipped,
                (long long)src.examples);
  for (const std::string& r : s.skip_reasons) std::printf("skipped:    %s\n", r.c_str());
}

int preview(int argc, char** argv) {
  Args a("data preview", argc, argv,
         {"--model", "--data", "--format", "--seq-len", "--limit", "--pack", "--seed"},
         {"--train-on-prompt", "--skip-bad", "--drop-long", "--no-thinking"});
  const std::string model = a.require("--model");
  const std::string data = a.require("--data");
  DatasetOptions o;
  o.format = data_format_parse(a.get("--format", "auto"));
  o.seq_len = a.get_int("--seq-len", 2048);
  o.pack = pack_mode_parse(a.get("--pack", "bfd"));
  o.train_on_prompt = a.has("--train-on-prompt");
  o.skip_bad = a.has("--skip-bad");
  o.drop_long = a.has("--drop-long");
  o.seed = static_cast<uint64_t>(a.get_int("--seed", 0));
  if (a.has("--no-thinking")) o.template_extra["enable_thinking"] = false;
  const int64_t limit = a.get_int("--limit", 3);

  const Tokenizer tokenizer = Tokenizer::from_dir(model);
  const JsonlFile file = jsonl_read(data, {o.format, o.skip_bad});
  std::optional<ChatTemplate> chat_template;
  if (is_chat(file.format)) chat_template = ChatTemplate::from_model_dir(model);
  const ChatTemplate* tpl = chat_template ? &*chat_template : nullptr;
  const bool color = ::isatty(STDOUT_FILENO);
  ExampleOptions eopt;
  eopt.train_on_prompt = o.train_on_prompt;
  eopt.template_extra = o.template_extra;

  std::printf("trained tokens are shown %s\n\n",
              color ? "\x1b[32min green\x1b[0m" : "[[between double brackets]]");
  const size_t n = std::min<size_t>(file.records.size(), static_cast<size_t>(std::max<int64_t>(limit, 0)));
  for (size_t i = 0; i < n; ++i) {
    const Record& r = file.records[i];
    Example ex;
    try {
      ex = example_render(r, tokenizer, tpl, eopt);
    } catch (const FormatError& e) {
      if (!o.skip_bad) throw;
      std::printf("── %s: skipped: %s\n\n", r.source.c_str(), e.what());
      continue;
    }
    const int64_t trained =
        std::count_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l != kIgnoreIndex; });
    std::printf("── %s (%s): %zu tokens, %lld trained\n", r.source.c_str(), data_format_name(r.format),
                ex.ids.size(), (long long)trained);
    const size_t shown = std::min<size_t>(ex.ids.size(), static_cast<size_t>(o.seq_len));
    const std::string text = marked_text(ex, shown, tokenizer, color);
    std::printf("%s%s", text.c_str(), !text.empty() && text.back() == '\n' ? "" : "\n");
    if (shown < ex.ids.size())
      std::printf("── %zu more tokens past --seq-len %lld: %s\n", ex.ids.size() - shown, (long long)o.seq_len,
                  o.drop_long ? "the example is dropped" : "cut off");
    std::printf("\n");
  }
  const Dataset ds = dataset_build({data}, tokenizer, tpl, o);
  print_stats(ds.stats, o);
  return 0;
}

}  // namespace

int cmd_data(int argc, char** argv) {
  const std::string usage =
      "tune data preview --model DIR --data FILE.jsonl [--format F] [--seq-len N] [--limit K]";
  if (argc < 1) throw ConfigError("tune data: give an action", usage);
  if (std::string(argv[0]) == "preview") return preview(argc - 1, argv + 1);
  throw ConfigError("tune data: unknown action '" + std::string(argv[0]) + "'", usage);
}

}  // namespace tune::cli
