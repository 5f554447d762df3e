// The training step on one CUDA GPU: CudaLoraModel's forward/backward over the step's rows, then the global
// gradient norm, clipping and AdamW on the device (flat fp32 moments). The host LoraAdapter and Optimizer are
// only synchronised for checkpoints and the final adapter, so the training loop itself never copies weights.
#pragma once

#include <memory>
#include <span>

#include "data/pack.h"
#include "model/forward_cuda.h"
#include "train/optimizer.h"

namespace tune {

struct StepResult;

class CudaTrainer {
 public:
  // Uploads `model` and `adapter`; buffers are planned by `plan` (micro-batches of at most plan.max_tokens).
  CudaTrainer(const Model& model, const LoraAdapter& adapter, const OptimizerConfig& config,
              const CudaPlanOptions& plan);
  // Random weights of `config`'s shape made on the GPU (benchmarks).
  CudaTrainer(const ModelConfig& config, const LoraAdapter& adapter, const OptimizerConfig& optimizer, uint64_t seed,
              const CudaPlanOptions& plan);
  ~CudaTrainer();

  // One optimizer step over all rows of the step (micro-batches of up to max_tokens real tokens); the loss is the
  // mean over the step's trained tokens, as train_step computes it on the CPU.
  StepResult step(std::span<const Row> rows, double lr, double max_grad_norm);

  // Adapter and optimizer state to / from the host (checkpoints, resume, the final adapter).
  void download(LoraAdapter& adapter, Optimizer& opt) const;
  void upload(const LoraAdapter& adapter, Optimizer& opt);

  CudaLoraModel& model() { return *model_; }
  // Device bytes the optimizer holds beside the model (cuda_optimizer_bytes).
  int64_t optimizer_bytes() const { return cuda_optimizer_bytes(model_->num_params()); }

 private:
  void init_optimizer(const OptimizerConfig& config);
  std::unique_ptr<CudaLoraModel> model_;
  OptimizerConfig config_;
  int64_t steps_ = 0;
  float* m_ = nullptr;  // device moments, laid out as the model's flat parameters
  float* v_ = nullptr;
  double* norm_ = nullptr;
};

}  // namespace tune
