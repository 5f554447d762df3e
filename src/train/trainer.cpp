// Training loop, checkpoints and the per-step log.
#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/lora_peft.h"
#include "ops/cross_entropy.h"
#include "train/step_cuda.h"

namespace fs = std::filesystem;

namespace tune {

StepResult train_step(const Model& model, LoraAdapter& adapter, Optimizer& opt, std::span<const Row> rows, double lr,
                      double max_grad_norm, uint64_t dropout_seed) {
  StepResult r;
  for (const Row& row : rows) {
    r.tokens += row.length;
    r.trained += row.trained_tokens();
  }
  adapter.zero_grad();
  if (r.trained == 0) {
    r.skipped = true;
    return r;
  }
  // d(mean loss)/d(row loss sum) = 1 / trained tokens of the whole step.
  const float scale = float(1.0 / double(r.trained));
  Rng rng(dropout_seed);
  Rng* dropout = adapter.config.dropout > 0 ? &rng : nullptr;
  double loss_sum = 0;
  for (const Row& row : rows) {
    const size_t n = size_t(row.length);  // padding after `length` is never computed
    const TokenRow tr{std::span(row.input_ids).first(n), std::span(row.position_ids).first(n),
                      std::span(row.doc_start).first(n)};
    loss_sum += model_loss_row(model, &adapter, tr, std::span(row.targets).first(n), scale, dropout).loss_sum;
  }
  r.loss = loss_sum / double(r.trained);
  const ParamRefs refs = lora_param_refs(adapter);
  r.grad_norm = grad_clip(refs, max_grad_norm);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    r.skipped = true;
    return r;
  }
  opt.step(lr);
  return r;
}

namespace {

std::string checkpoint_dir(const std::string& out, int64_t step) {
  return (fs::path(out) / ("checkpoint-" + std::to_string(step))).string();
}

std::string eta(double seconds) {
  char buf[32];
  const long s = long(seconds);
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace

void checkpoint_save(const std::string& dir, const LoraAdapter& adapter, Optimizer& opt, const Model& model,
                     const TrainState& state, uint64_t data_fingerprint, const TrainOptions& options) {
  // Everything goes to DIR.tmp, which is renamed into place last: a crash leaves the previous checkpoint whole.
  const std::string tmp = dir + ".tmp";
  fs::remove_all(tmp);
  lora_save_peft(adapter, model, tmp, options.base_model);
  NamedTensors moments;
  for (size_t i = 0; i < opt.m().size(); ++i) {
    moments.emplace_back("m." + std::to_string(i), opt.m()[i]);
    moments.emplace_back("v." + std::to_string(i), opt.v()[i]);
  }
  safetensors_write((fs::path(tmp) / "optimizer.safetensors").string(), moments);
  const Json st = {{"step", state.step},
                   {"data", data_cursor_to_json(state.cursor, data_fingerprint)},
                   {"seed", options.seed},
                   {"optimizer_steps", opt.steps()}};
  json_save_file((fs::path(tmp) / "trainer_state.json").string(), st);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

TrainState checkpoint_load(const std::string& dir, LoraAdapter& adapter, Optimizer& opt, const Model& model,
                           uint64_t data_fingerprint) {
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  if (!fs::exists(state_path))
    throw IoError(state_path + ": not found", "--resume takes a checkpoint-N directory written by tune train");
  const Json st = json_load_file(state_path);
  const LoraAdapter loaded = lora_load_peft(dir, model);
  if (loaded.num_parameters() != adapter.num_parameters())
    throw ConfigError(dir + ": the checkpoint's adapter differs from this run's LoRA settings",
                      "resume with the same --lora-r and --target as the original run");
  for (size_t l = 0; l < adapter.layers.size(); ++l)
    for (int t = 0; t < kLoraTargets; ++t) {
      LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) continue;
      w.A = loaded.layers[l][size_t(t)].A;
      w.B = loaded.layers[l][size_t(t)].B;
    }
  const SafetensorsFile f((fs::path(dir) / "optimizer.safetensors").string());
  for (size_t i = 0; i < opt.m().size(); ++i) {
    opt.m()[i] = f.entries().at("m." + std::to_string(i)).tensor.clone();
    opt.v()[i] = f.entries().at("v." + std::to_string(i)).tensor.clone();
  }
  opt.set_steps(st.at("optimizer_steps").get<int64_t>());
  return TrainState{st.at("step").get<int64_t>(), data_cursor_from_json(st.at("data"), data_fingerprint)};
}

int64_t train_run(const Model& model, LoraAdapter& adapter, const Dataset& data, const TrainOptions& o) {
  if (data.num_rows() == 0) throw ConfigError("no training rows", "check the data file and --seq-len");
  if (o.batch_size <= 0 || o.grad_accum <= 0) throw ConfigError("--batch-size and --grad-accum must be positive");
  fs::create_directories(o.out);
  const int64_t per_step = o.batch_size * o.grad_accum;
  const int64_t n = data.num_rows();
  const uint64_t fingerprint = data.fingerprint();
  const int64_t total = o.steps > 0 ? o.steps : std::max<int64_t>(1, int64_t(std::ceil(o.epochs * double(n) / double(per_step))));
  Optimizer opt(o.optimizer, adapter);
  TrainState state;
  if (!o.resume.empty()) state = checkpoint_load(o.resume, adapter, opt, model, fingerprint);
  std::unique_ptr<CudaTrainer> gpu;
  if (o.device == Device::CUDA) {
    const int64_t max_tokens = o.batch_size * int64_t(data.row(0).input_ids.size());
    gpu = std::make_unique<CudaTrainer>(model, adapter, o.optimizer,
                                        cuda_plan_options(model.config, adapter.config, max_tokens));
    if (!o.resume.empty()) gpu->upload(adapter, opt);
  }

  const std::string log_path = o.log.empty() ? (fs::path(o.out) / "train_log.jsonl").string() : o.log;
  // A resumed run continues the log; lines past the checkpoint (from a crashed run) are dropped.
  std::vector<std::string> kept;
  if (!o.resume.empty() && fs::exists(log_path)) {
    std::ifstream in(log_path);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const Json j = json_parse(line, log_path);
      if (j.value("step", int64_t(0)) <= state.step) kept.push_back(line);
    }
  }
  std::ofstream log(log_path, std::ios::trunc);
  for (const std::string& line : kept) log << line << "\n";
  log.flush();

  const bool tty = !o.quiet && ::isatty(STDERR_FILENO);
  // Without shuffling every epoch reads the rows in layout order.
  RowSampler sampler(n, o.seed, state.cursor);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done_here = 0, tokens_here = 0;
  while (state.step < total) {
    std::vector<Row> step_rows;
    for (int64_t i = 0; i < per_step; ++i) {
      if (o.shuffle) {
        step_rows.push_back(data.row(sampler.next()));
        state.cursor = sampler.cursor();
      } else {
        if (state.cursor.index >= n) state.cursor = DataCursor{state.cursor.epoch + 1, 0};
        step_rows.push_back(data.row(state.cursor.index++));
      }
    }
    const double lr = schedule_lr(o.schedule, o.lr, state.step, o.warmup_steps, total);
    const auto ts = std::chrono::steady_clock::now();
    const StepResult r = gpu ? gpu->step(step_rows, lr, o.max_grad_norm)
                             : train_step(model, adapter, opt, step_rows, lr, o.max_grad_norm,
                                          o.seed + uint64_t(state.step) * 7919);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    if (r.skipped && r.trained > 0 && !o.skip_nonfinite) {
      throw Error("step " + std::to_string(state.step + 1) + ": loss " + std::to_string(r.loss) + ", gradient norm " +
                      std::to_string(r.grad_norm) + " is not finite; the adapter was not updated",
                  "lower --lr, check the data, or pass --skip-nonfinite to skip such steps");
    }
    ++state.step;
    ++done_here;
    tokens_here += r.tokens;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const Json line = {{"step", state.step},     {"loss", r.loss},          {"lr", lr},
                       {"grad_norm", r.grad_norm}, {"trained_tokens", r.trained}, {"tokens", r.tokens},
                       {"tokens_per_s", double(r.tokens) / std::max(dt, 1e-9)}, {"skipped", r.skipped}};
    log << line.dump() << "\n";
    log.flush();
    if (tty) {
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s   ", (long long)state.step,
                   (long long)total, r.loss, lr, double(tokens_here) / elapsed,
                   eta(elapsed / double(done_here) * double(total - state.step)).c_str());
    } else if (!o.quiet && (state.step == 1 || state.step % 10 == 0 || state.step == total)) {
      std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e\n", (long long)state.step, (long long)total, r.loss, lr);
    }
    const bool last = state.step == total;
    const bool save = (o.save_every > 0 && state.step % o.save_every == 0) || last;
    if (gpu && (save || (o.stop_after > 0 && done_here >= o.stop_after))) gpu->download(adapter, opt);
    if (save)
      checkpoint_save(checkpoint_dir(o.out, state.step), adapter, opt, model, state, fingerprint, o);
    if (o.stop_after > 0 && done_here >= o.stop_after) break;
  }
  if (tty) std::fprintf(stderr, "\n");
  if (state.step == total) lora_save_peft(adapter, model, (fs::path(o.out) / "adapter").string(), o.base_model);
  return state.step;
}

}  // namespace tune
