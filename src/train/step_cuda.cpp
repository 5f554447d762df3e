// CudaTrainer: the step loop on the device; see step_cuda.h.
#include "train/step_cuda.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "train/trainer.h"

#if TUNE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "ops/adamw.h"
#endif

namespace tune {

#if TUNE_CUDA

CudaTrainer::CudaTrainer(const Model& model, const LoraAdapter& adapter, const OptimizerConfig& config,
                         const CudaPlanOptions& plan)
    : model_(std::make_unique<CudaLoraModel>(model, adapter, plan)) {
  init_optimizer(config);
}

CudaTrainer::CudaTrainer(const ModelConfig& config, const LoraAdapter& adapter, const OptimizerConfig& optimizer,
                         uint64_t seed, const CudaPlanOptions& plan)
    : model_(std::make_unique<CudaLoraModel>(config, adapter, seed, plan)) {
  init_optimizer(optimizer);
}

void CudaTrainer::init_optimizer(const OptimizerConfig& config) {
  if (config.kind != OptimizerKind::AdamW)
    throw UnsupportedError("training on CUDA supports the AdamW optimizer only", "drop --optimizer sgd");
  config_ = config;
  const size_t n = size_t(model_->num_params());
  CUDA_CHECK(cudaMalloc(&m_, n * 4));
  CUDA_CHECK(cudaMalloc(&v_, n * 4));
  CUDA_CHECK(cudaMalloc(&norm_, sizeof(double)));
  CUDA_CHECK(cudaMemset(m_, 0, n * 4));
  CUDA_CHECK(cudaMemset(v_, 0, n * 4));
}

CudaTrainer::~CudaTrainer() {
  cudaFree(m_);
  cudaFree(v_);
  cudaFree(norm_);
}

StepResult CudaTrainer::step(std::span<const Row> rows, double lr, double max_grad_norm) {
  StepResult r;
  for (const Row& row : rows) {
    r.tokens += row.length;
    r.trained += row.trained_tokens();
  }
  model_->zero_grad();
  if (r.trained == 0) {
    r.skipped = true;
    return r;
  }
  const float scale = float(1.0 / double(r.trained));
  double loss_sum = 0;
  CudaBatch batch;
  for (const Row& row : rows) {
    const size_t n = size_t(row.length);
    if (n > size_t(model_->max_tokens()))
      throw ConfigError("a row of " + std::to_string(n) + " tokens exceeds the planned micro-batch",
                        "raise the planned tokens (batch size x sequence length)");
    if (batch.size() + int64_t(n) > model_->max_tokens()) {
      loss_sum += model_->forward_backward(batch, scale);
      batch = CudaBatch{};
    }
    batch.append(std::span(row.input_ids).first(n), std::span(row.position_ids).first(n),
                 std::span(row.doc_start).first(n), std::span(row.targets).first(n));
  }
  if (batch.size() > 0) loss_sum += model_->forward_backward(batch, scale);
  r.loss = loss_sum / double(r.trained);
  cuda::sum_squares(model_->grads(), model_->num_params(), norm_);
  double ss = 0;
  CUDA_CHECK(cudaMemcpy(&ss, norm_, sizeof ss, cudaMemcpyDeviceToHost));
  r.grad_norm = std::sqrt(ss);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    r.skipped = true;
    return r;
  }
  const double coef = max_grad_norm / (r.grad_norm + 1e-6);
  const float gs = max_grad_norm > 0 && coef < 1.0 ? float(coef) : 1.0f;
  ++steps_;
  cuda::adamw_step(model_->params(), model_->grads(), m_, v_, model_->num_params(), lr, config_.beta1,
                   config_.beta2, config_.eps, config_.weight_decay, steps_, gs);
  model_->params_changed();
  return r;
}

void CudaTrainer::download(LoraAdapter& adapter, Optimizer& opt) const {
  model_->download_adapter(adapter);
  model_->copy_flat(m_, opt.m(), false);
  model_->copy_flat(v_, opt.v(), false);
  opt.set_steps(steps_);
}

void CudaTrainer::upload(const LoraAdapter& adapter, Optimizer& opt) {
  model_->upload_adapter(adapter);
  model_->copy_flat(m_, opt.m(), true);
  model_->copy_flat(v_, opt.v(), true);
  steps_ = opt.steps();
}

#else  // !TUNE_CUDA

namespace {
[[noreturn]] void no_cuda() {
  throw UnsupportedError("this build of tune has no CUDA support", "rebuild on a machine with the CUDA toolkit (nvcc)");
}
}  // namespace

CudaTrainer::CudaTrainer(const Model&, const LoraAdapter&, const OptimizerConfig&, const CudaPlanOptions&) {
  no_cuda();
}
CudaTrainer::CudaTrainer(const ModelConfig&, const LoraAdapter&, const OptimizerConfig&, uint64_t,
                         const CudaPlanOptions&) {
  no_cuda();
}
CudaTrainer::~CudaTrainer() = default;
StepResult CudaTrainer::step(std::span<const Row>, double, double) { no_cuda(); }
void CudaTrainer::download(LoraAdapter&, Optimizer&) const { no_cuda(); }
void CudaTrainer::upload(const LoraAdapter&, Optimizer&) { no_cuda(); }
void CudaTrainer::init_optimizer(const OptimizerConfig&) { no_cuda(); }

#endif

}  // namespace tune
