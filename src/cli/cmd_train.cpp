// tune train: LoRA fine-tuning of a Hugging Face model on JSONL data (see --help for the flags). Writes
// OUT/adapter (PEFT), OUT/checkpoint-N every --save-every steps and OUT/train_log.jsonl.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "io/json.h"
#include "model/forward_cuda.h"
#include "model/lora_peft.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace tune::cli {

namespace {

// The model's chat template when it ships one (chat_template.jinja or tokenizer_config.json's chat_template).
std::optional<ChatTemplate> chat_template_if_any(const std::string& dir) {
  const fs::path cfg = fs::path(dir) / "tokenizer_config.json";
  const bool has = fs::exists(fs::path(dir) / "chat_template.jinja") ||
                   (fs::exists(cfg) && json_load_file(cfg.string()).contains("chat_template"));
  if (!has) return std::nullopt;
  return ChatTemplate::from_model_dir(dir);
}

}  // namespace

int cmd_train(int argc, char** argv) {
  Args a("train", argc, argv,
         {"--model", "--data", "--format", "--out", "--lora-r", "--lora-alpha", "--lora-dropout", "--target",
          "--init-adapter", "--optimizer", "--lr", "--scheduler", "--warmup-steps", "--steps", "--epochs",
          "--batch-size", "--grad-accum", "--seq-len", "--weight-decay", "--max-grad-norm", "--seed", "--save-every",
          "--resume", "--log", "--mix", "--device", "--pack", "--threads"},
         {"--rslora", "--no-shuffle", "--skip-bad", "--skip-nonfinite", "--train-on-prompt", "--no-thinking",
          "--drop-long", "--quiet"});
  const std::string device = a.get("--device", "cpu");
  if (device != "cpu" && device != "cuda")
    throw ConfigError("tune train: --device must be cpu or cuda, got '" + device + "'");
  if (a.has("--threads")) set_num_threads(int(a.get_int("--threads", 0)));
  if (a.has("--steps") && a.has("--epochs")) throw ConfigError("tune train: give --steps or --epochs, not both");

  const std::string model_dir = a.require("--model");
  const Model model = model_load(model_dir);
  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);
  const std::optional<ChatTemplate> tpl = chat_template_if_any(model_dir);

  DatasetOptions d;
  d.format = data_format_parse(a.get("--format", "auto"));
  d.seq_len = a.get_int("--seq-len", 2048);
  d.pack = pack_mode_parse(a.get("--pack", "bfd"));
  d.train_on_prompt = a.has("--train-on-prompt");
  d.skip_bad = a.has("--skip-bad");
  d.drop_long = a.has("--drop-long");
  d.seed = uint64_t(a.get_int("--seed", 0));
  for (const std::string& m : a.get_all("--mix")) d.mixes.push_back(mix_spec_parse(m));
  if (a.has("--no-thinking")) d.template_extra["enable_thinking"] = false;
  const Dataset data = dataset_build(a.get_all("--data").empty() ? std::vector<std::string>{a.require("--data")}
                                                                 : a.get_all("--data"),
                                     tokenizer, tpl ? &*tpl : nullptr, d);
  const DataStats& st = data.stats;
  std::fprintf(stderr,
               "data: %lld records, %lld examples in %lld rows of %lld, %lld tokens (%.1f%% trained), "
               "%lld truncated, %lld dropped, %lld skipped\n",
               (long long)st.records, (long long)st.examples, (long long)st.rows, (long long)d.seq_len,
               (long long)st.tokens, st.tokens ? 100.0 * double(st.trained_tokens) / double(st.tokens) : 0.0,
               (long long)st.truncated, (long long)st.dropped, (long long)st.skipped);

  LoraConfig lc;
  lc.rank = a.get_int("--lora-r", 16);
  lc.alpha = a.get_double("--lora-alpha", 2.0 * double(lc.rank));
  lc.dropout = a.get_double("--lora-dropout", 0.0);
  lc.rslora = a.has("--rslora");
  // Default: every projection of attention and MLP, plus Gated DeltaNet's in/out projections on Qwen3.5.
  const char* default_targets = model.config.has_mixer(MixerKind::GatedDeltaNet) ? "q,k,v,o,gate,up,down,qkv,z,out"
                                                                                 : "q,k,v,o,gate,up,down";
  lc.targets = lora_targets_parse(a.get("--target", default_targets));
  TrainOptions o;
  o.seed = d.seed;
  LoraAdapter adapter = a.has("--init-adapter") ? lora_load_peft(a.get("--init-adapter", ""), model)
                                                : LoraAdapter::init(model.config, lc, o.seed);
  if (a.has("--init-adapter") && a.has("--lora-dropout")) adapter.config.dropout = lc.dropout;

  o.out = a.require("--out");
  o.base_model = fs::absolute(model_dir).string();
  o.log = a.get("--log", "");
  const std::string optim = a.get("--optimizer", "adamw");
  if (optim == "adamw") o.optimizer.kind = OptimizerKind::AdamW;
  else if (optim == "sgd") o.optimizer.kind = OptimizerKind::Sgd;
  else throw ConfigError("tune train: --optimizer must be adamw or sgd, got '" + optim + "'");
  o.optimizer.weight_decay = a.get_double("--weight-decay", 0.0);
  o.lr = a.get_double("--lr", 2e-4);
  o.schedule = schedule_parse(a.get("--scheduler", "linear"));
  o.warmup_steps = a.get_int("--warmup-steps", 0);
  o.steps = a.get_int("--steps", 0);
  o.epochs = a.get_double("--epochs", 1.0);
  o.batch_size = a.get_int("--batch-size", 1);
  o.grad_accum = a.get_int("--grad-accum", 1);
  o.max_grad_norm = a.get_double("--max-grad-norm", 1.0);
  o.shuffle = !a.has("--no-shuffle");
  o.save_every = a.get_int("--save-every", 0);
  o.skip_nonfinite = a.has("--skip-nonfinite");
  o.resume = a.get("--resume", "");
  o.quiet = a.has("--quiet");
  if (device == "cuda") {
    std::string why;
    if (!cuda_training_supported(model.config, adapter.config, &why))
      throw UnsupportedError("tune train --device cuda does not support " + why + " yet",
                             "use --device cpu for this model or these LoRA settings");
    if (!cuda_available()) throw UnsupportedError("tune train --device cuda: no CUDA device found", "use --device cpu");
    o.device = Device::CUDA;
  }
  std::fprintf(stderr, "lora: r %lld, alpha %g%s, %lld trainable parameters\n", (long long)adapter.config.rank,
               adapter.config.alpha, adapter.config.rslora ? " (rsLoRA)" : "", (long long)adapter.num_parameters());
  const int64_t steps = train_run(model, adapter, data, o);
  std::printf("trained %lld steps; adapter in %s\n", (long long)steps, (fs::path(o.out) / "adapter").c_str());
  return 0;
}

}  // namespace tune::cli
