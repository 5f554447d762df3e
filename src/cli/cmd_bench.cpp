// tune bench train: LoRA training speed and GPU memory on random weights of a real model's shape (a preset), with
// random tokens, every token trained; the numbers that bench/RESULTS.md compares with transformers+PEFT.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "io/json.h"
#include "model/presets.h"
#include "train/step_cuda.h"
#include "train/trainer.h"

#if TUNE_CUDA
#include <cuda_runtime.h>
#endif

namespace tune::cli {

namespace {

#if TUNE_CUDA
int64_t device_used_bytes() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
  return int64_t(total_b - free_b);
}
#endif

int bench_train(int argc, char** argv) {
  Args a("bench train", argc, argv,
         {"--preset", "--batch-size", "--seq-len", "--steps", "--warmup", "--lora-r", "--lora-alpha", "--seed",
          "--memory-limit-gib", "--ffn-chunk", "--min-length"},
         {"--json", "--offload", "--recompute-attention", "--no-graphs"});
  const auto t_launch = std::chrono::steady_clock::now();
  const std::string preset = a.require("--preset");
  const ModelConfig config = preset_config(preset);
  const int64_t B = a.get_int("--batch-size", 4), S = a.get_int("--seq-len", 2048);
  const int64_t steps = a.get_int("--steps", 8), warmup = a.get_int("--warmup", 2);
  const uint64_t seed = uint64_t(a.get_int("--seed", 0));
  // --min-length: each row holds random-length documents and has its own length in [min, seq_len], as packed
  // real data does (every step a new token count); by default every row is one document of seq_len tokens.
  const int64_t min_len = a.get_int("--min-length", S);
  if (B <= 0 || S < 2 || steps <= 0 || warmup < 0)
    throw ConfigError("tune bench train: --batch-size, --seq-len (>= 2) and --steps must be positive");
  if (min_len < 2 || min_len > S)
    throw ConfigError("tune bench train: --min-length must be in [2, --seq-len]", "e.g. --min-length 1792");
  LoraConfig lc;
  lc.rank = a.get_int("--lora-r", 16);
  lc.alpha = a.get_double("--lora-alpha", double(lc.rank));
  // Qwen3.5: the Gated DeltaNet's in_proj_qkv, in_proj_z and out_proj too, as bench/hf_baseline.py targets them.
  if (config.has_mixer(MixerKind::GatedDeltaNet))
    for (LoraTarget t : {LoraTarget::LinQkv, LoraTarget::LinZ, LoraTarget::LinOut}) lc.targets[size_t(t)] = true;
#if TUNE_CUDA
  if (!cuda_available()) throw UnsupportedError("tune bench train: no CUDA device found", "run it on a GPU machine");
  const int64_t used0 = device_used_bytes();
  const LoraAdapter adapter = LoraAdapter::init(config, lc, seed);
  // --memory-limit-gib plans as a smaller GPU would (offloading checkpoints when they do not fit), so a run on
  // a larger device can stand for it; the peak reported below is what was really used.
  const double limit_gib = a.get_double("--memory-limit-gib", 0.0);
  CudaPlanOptions plan = cuda_plan_options(config, lc, B * S, int64_t(limit_gib * double(int64_t(1) << 30)));
  if (a.has("--offload")) {  // all of them
    plan.offload = true;
    plan.keep_ckpt = 0;
  }
  if (a.has("--recompute-attention")) plan.keep_attention = false;
  if (a.has("--no-graphs")) plan.graphs = false;
  plan.ffn_chunk = a.get_int("--ffn-chunk", 0);
  CudaTrainer trainer(config, adapter, OptimizerConfig{}, seed, plan);
  int64_t peak = device_used_bytes() - used0;

  // Random tokens, each position trained on the next token of its document (the baseline's labels = ids). With
  // --min-length, documents of S/8 to S/2 tokens (the last one cut at the row's length).
  Rng rng(seed + 1);
  int64_t tokens = 0;  // of the timed steps
  auto make_rows = [&] {
    std::vector<Row> rows(static_cast<size_t>(B));
    for (Row& r : rows) {
      const int64_t len = min_len + int64_t(rng.next() % uint64_t(S - min_len + 1));
      r.input_ids.assign(size_t(S), 0);
      r.targets.assign(size_t(S), -100);
      r.position_ids.assign(size_t(S), 0);
      r.doc_start.assign(size_t(S), 0);
      r.num_docs = 0;
      for (int64_t d0 = 0; d0 < len; ++r.num_docs) {
        const int64_t doc = min_len == S ? S : S / 8 + int64_t(rng.next() % uint64_t(S / 2 - S / 8 + 1));
        const int64_t d1 = std::min(len, d0 + doc);
        for (int64_t t = d0; t < d1; ++t) {
          r.input_ids[size_t(t)] = int32_t(rng.next() % uint64_t(config.vocab_size));
          r.position_ids[size_t(t)] = int32_t(t - d0);
          r.doc_start[size_t(t)] = int32_t(d0);
        }
        for (int64_t t = d0; t + 1 < d1; ++t) r.targets[size_t(t)] = r.input_ids[size_t(t + 1)];
        d0 = d1;
      }
      r.length = int32_t(len);
    }
    return rows;
  };
  double first_step_s = 0, loss = 0, timed = 0;
  for (int64_t i = 0; i < warmup + steps; ++i) {
    const std::vector<Row> rows = make_rows();
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = trainer.step(rows, 1e-4, 1.0);
    cudaDeviceSynchronize();
    const auto t1 = std::chrono::steady_clock::now();
    loss = r.loss;
    peak = std::max(peak, device_used_bytes() - used0);
    if (i == 0) first_step_s = std::chrono::duration<double>(t1 - t_launch).count();
    if (i >= warmup) {
      timed += std::chrono::duration<double>(t1 - t0).count();
      for (const Row& row : rows) tokens += row.length;
    }
  }
  const double step_s = timed / double(steps), tps = double(tokens) / timed, gib = double(1 << 30);
  const CudaMemoryReport& m = trainer.model().memory();
  const double planned = double(m.total() + trainer.optimizer_bytes());
  const Json j = {{"preset", preset},
                  {"batch_size", B},
                  {"seq_len", S},
                  {"lora_r", lc.rank},
                  {"steps", steps},
                  {"min_length", min_len},
                  {"tokens_per_s", tps},
                  {"step_ms", step_s * 1e3},
                  {"peak_gib", double(peak) / gib},
                  {"planned_gib", planned / gib},
                  {"optimizer_gib", double(trainer.optimizer_bytes()) / gib},
                  {"weights_gib", double(m.weights) / gib},
                  {"checkpoints_gib", double(m.checkpoints) / gib},
                  {"activations_gib", double(m.activations) / gib},
                  {"first_step_s", first_step_s},
                  {"offload", plan.offload},
                  {"keep_ckpt", plan.keep_ckpt},
                  {"keep_attention", plan.keep_attention},
                  {"keep_u", plan.keep_u},
                  {"keep_mid", plan.keep_mid},
                  {"keep_qkv", plan.keep_qkv},
                  {"bus_qkv", plan.bus_qkv},
                  {"keep_gu", plan.keep_gu},
                  {"drop_w", plan.drop_w},
                  {"graph_steps", trainer.model().graph_steps()},
                  {"host_checkpoints_gib", double(m.host_checkpoints) / gib},
                  {"host_weights_gib", double(m.host_weights) / gib},
                  {"loss", loss}};
  if (a.has("--json")) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    const int64_t ckpts = config.num_layers + 1;  // the planner keeps keep_ckpt within them
    const std::string off = plan.offload ? ", " + std::to_string(ckpts - plan.keep_ckpt) + " of " +
                                               std::to_string(ckpts) + " checkpoints offloaded"
                                         : "";
    std::printf("%s b%lld x %lld, LoRA r%lld: %.0f tokens/s, %.1f ms/step, peak %.2f GiB (planned %.2f%s), first step "
                "done %.1f s after launch, loss %.4f\n",
                preset.c_str(), (long long)B, (long long)S, (long long)lc.rank, tps, step_s * 1e3, double(peak) / gib,
                planned / gib, off.c_str(), first_step_s, loss);
  }
  return 0;
#else
  (void)t_launch;
  (void)steps;
  (void)warmup;
  (void)seed;
  (void)min_len;
  throw UnsupportedError("tune bench train needs a build with CUDA", "rebuild on a machine with the CUDA toolkit");
#endif
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  if (argc < 1 || std::string(argv[0]) != "train")
    throw ConfigError("tune bench: unknown benchmark", "use: tune bench train --preset NAME ...");
  return bench_train(argc - 1, argv + 1);
}

}  // namespace tune::cli
