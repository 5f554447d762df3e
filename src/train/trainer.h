// The LoRA training loop: optimizer steps over micro-batches of token rows, learning-rate schedule, clipping,
// NaN/Inf detection, a JSON line per step, and checkpoints every N steps from which a run resumes exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace tune {

struct StepResult {
  double loss = 0;         // mean cross-entropy over the step's trained tokens
  double grad_norm = 0;    // global norm before clipping
  int64_t trained = 0;     // trained tokens in the step
  int64_t tokens = 0;      // all tokens in the step
  bool skipped = false;    // non-finite loss or gradient, step not applied
};

// One optimizer step over `rows` (all micro-batches of the step; see data/pack.h for the row layout; only the
// `length` real tokens of a row are computed). The loss is the mean over every trained token of the step, so
// gradient accumulation divides by the total trained-token count, not by the micro-batch count.
StepResult train_step(const Model& model, LoraAdapter& adapter, Optimizer& opt, std::span<const Row> rows, double lr,
                      double max_grad_norm, uint64_t dropout_seed);

struct TrainOptions {
  std::string out;            // output directory (adapter, checkpoints, log)
  std::string base_model;     // recorded in adapter_config.json
  std::string log;            // JSONL log path ("" = OUT/train_log.jsonl)
  OptimizerConfig optimizer;
  double lr = 2e-4;
  ScheduleKind schedule = ScheduleKind::Constant;
  int64_t warmup_steps = 0;
  int64_t steps = 0;          // 0: from epochs
  double epochs = 1;
  int64_t batch_size = 1;     // rows per micro-batch
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  double max_grad_norm = 1.0; // 0 = off
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t save_every = 0;     // 0 = only at the end
  bool skip_nonfinite = false;  // skip a step with NaN/Inf loss or gradient instead of stopping
  std::string resume;         // checkpoint dir to continue from
  bool quiet = false;         // no progress line
  int64_t stop_after = 0;     // stop (as if killed) after this many steps of this run; 0 = run to the end
  Device device = Device::CPU;  // CUDA: the step runs on the GPU (train/step_cuda.h)
};

// Trains `adapter` on the rows of `data` and writes OUT/adapter (PEFT), checkpoints OUT/checkpoint-N and the log.
// With options.device CUDA the steps run on the GPU (micro-batches of batch_size rows' tokens) and the adapter
// and optimizer state come back to the host for each checkpoint.
// Returns the number of optimizer steps done in total.
int64_t train_run(const Model& model, LoraAdapter& adapter, const Dataset& data, const TrainOptions& options);

// Checkpoint directory I/O (adapter, optimizer moments, step, data cursor tied to the data's fingerprint).
struct TrainState {
  int64_t step = 0;  // optimizer steps done
  DataCursor cursor;
};
void checkpoint_save(const std::string& dir, const LoraAdapter& adapter, Optimizer& opt, const Model& model,
                     const TrainState& state, uint64_t data_fingerprint, const TrainOptions& options);
TrainState checkpoint_load(const std::string& dir, LoraAdapter& adapter, Optimizer& opt, const Model& model,
                           uint64_t data_fingerprint);

}  // namespace tune
