// The LoRA training forward and backward of a Qwen2/Qwen2.5/Qwen3/Qwen3-MoE/Qwen3.5(-MoE) model on one CUDA GPU:
// attention, gated attention and Gated DeltaNet mixers, dense and MoE FFNs, LoRA on every projection (the routed
// experts' too, as PEFT's target_parameters).
// Memory plan (see DESIGN.md, "Training memory plan"): base weights bf16 and frozen (q/k/v[/gate] and gate/up
// fused into one matrix each), norm weights f32; LoRA A/B as fp32 masters with bf16 copies for the products and fp32
// gradients, all in flat buffers (one optimizer launch covers them). The forward keeps only each layer's input
// (bf16); the backward recomputes a layer from it, then runs that layer's backward. Every buffer is sized once
// for `max_tokens` tokens, so a step allocates nothing. The output head and cross-entropy run fused and chunked
// over the trained tokens only. A micro-batch is a list of token rows concatenated into one stream: attention
// stays inside each document (doc_start), so no padding is ever computed.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/lora.h"
#include "model/model.h"

namespace tune {

// One micro-batch as host arrays of equal length T: ids, RoPE positions, doc_start[t] (stream index of the first
// token of t's document) and targets (-100 = not trained).
struct CudaBatch {
  std::vector<int32_t> ids, pos, doc_start, targets;
  void append(std::span<const int32_t> ids_, std::span<const int32_t> pos_, std::span<const int32_t> doc_start_,
              std::span<const int32_t> targets_);
  int64_t size() const { return int64_t(ids.size()); }
};

struct CudaMemoryReport {
  int64_t weights = 0, checkpoints = 0, activations = 0, lora = 0, workspace = 0;  // device bytes
  int64_t host_checkpoints = 0;  // pinned host bytes (offload)
  int64_t host_weights = 0;      // pinned host bytes (drop_w)
  int64_t total() const { return weights + checkpoints + activations + lora + workspace; }
};

struct CudaPlanOptions {
  int64_t max_tokens = 0;  // tokens of the largest micro-batch
  int64_t ffn_chunk = 0;   // tokens per FFN chunk (0: min(max_tokens, 16384))
  bool offload = false;    // checkpoints in pinned host memory (long sequences)
  // With offload: the last keep_ckpt checkpoints (of the L + 1) stay on the device in slots of their own, the
  // first ones go to the host through two rotating slots.
  int64_t keep_ckpt = 0;
  // Each layer's mixer output kept (in pinned host memory) so the backward skips recomputing it: attention layers'
  // output and lse (T nH d 2 + nH T 4 host bytes), DeltaNet layers' recurrence output (T nV dv 2 bytes).
  bool keep_attention = false;
  // The first keep_mid attention layers keep their mixer output (T H 2 device bytes each), the first keep_qkv
  // (<= keep_mid) their q|k|v product too (T (nH + 2 nKV) d 2 bytes, gated attention's gate columns besides), on
  // the device: the backward skips recomputing their o and q|k|v products.
  int64_t keep_mid = 0, keep_qkv = 0;
  // Beyond those, every other attention layer (keep_qkv + 1, keep_qkv + 3, ...), up to bus_qkv of them, keeps its
  // q|k|v product in pinned host memory through two device slots of its own: where the bus has room beside the
  // forward's products, this skips more q|k|v products than the slots' device memory would keep.
  int64_t bus_qkv = 0;
  // Attention layers' o LoRA u (T r 2 device bytes each) and dense FFN layers' down LoRA u (the same) kept from
  // the forward: the backward skips the products over the out-projection's input and over h that remake them.
  bool keep_u = false;
  // The last keep_gu dense FFN layers keep their gate|up product (T (2 I + the gu group's kdx) 2 device bytes
  // each) from the forward: the backward skips recomputing it, the largest product it remakes.
  int64_t keep_gu = 0;
  // The first drop_w layers (attention and dense FFN, before every layer keeping gate|up) give up the device
  // memory of their frozen matrices from their forward to their backward: the kept gate|up products fill it
  // meanwhile, and the backward brings the matrices back from pinned host memory as those are spent, over the bus
  // direction that otherwise carries only the checkpoints and kept activations back.
  int64_t drop_w = 0;
  // The third and later steps of a batch shape (tokens, trained tokens and gradient scale alike) replay the
  // third as recorded: the main stream's work between its waits for the side stream as CUDA graphs, so that its
  // thousand-odd launches and memsets run without the gaps stream operations leave between them. Not for MoE
  // models (their step reads the routing back to the host) or head dims the fused attention does not take.
  bool graphs = true;
};

// Device bytes of the optimizer's state beside a model of n LoRA parameters (CudaTrainer's: AdamW's two fp32
// moments per parameter and the gradient norm's sum), which the planner counts before the trainer allocates them.
inline int64_t cuda_optimizer_bytes(int64_t nparams) { return 2 * 4 * nparams + int64_t(sizeof(double)); }

// The options for `max_tokens` under a device-memory budget (bytes; 0 = what the device has free): offload as
// few checkpoints as make the plan fit; memory to spare keeps the LoRA u's (keep_u), then attention layers'
// activations (keep_mid, then keep_qkv), for which more checkpoints are offloaded where the bus has room beside
// the layers' products; memory beyond every attention layer's keeps gate|up products (keep_gu). With every xmid
// kept and room on the bus into the device during the backward, the first layers' matrices give way to more
// gate|up products (drop_w).
CudaPlanOptions cuda_plan_options(const ModelConfig& config, const LoraConfig& lora, int64_t max_tokens,
                                  int64_t budget_bytes = 0);

// When the backward brings drop_w's matrices back (`total` bytes, in address order): for each layer l (index l of
// each span), how many bytes are sent once its backward starts, to arrive while it runs. The bus's room beside
// the layer's own copies then (room[l], any unit) shares the bytes out, so that busy layers carry fewer; no more
// than spent[l] (the bytes of the gate|up slots spent by then); what the layer below needs in before it starts
// (need[l - 1], a dropped layer's last byte) as far as spent[l] allows, and need[l] (<= spent[l]) at the latest.
// The counts never decrease from the last layer to the first.
std::vector<int64_t> bring_back_schedule(std::span<const double> room, std::span<const int64_t> spent,
                                         std::span<const int64_t> need, int64_t total);

class CudaLoraModel {
 public:
  // Copies `model`'s weights to the GPU (bf16) and takes the LoRA layout and values of `adapter`; buffers are
  // planned for `plan`.
  CudaLoraModel(const Model& model, const LoraAdapter& adapter, const CudaPlanOptions& plan);
  // A model of `config`'s shape with seeded random weights made on the GPU (matrices ~ N(0, 0.02), norms 1) and
  // `adapter`: benchmarks of real shapes without the weights ever on the host.
  CudaLoraModel(const ModelConfig& config, const LoraAdapter& adapter, uint64_t seed, const CudaPlanOptions& plan);
  ~CudaLoraModel();
  CudaLoraModel(const CudaLoraModel&) = delete;
  CudaLoraModel& operator=(const CudaLoraModel&) = delete;

  // Adapter values host <-> device (A and B; gradients too on download).
  void upload_adapter(const LoraAdapter& adapter);
  void download_adapter(LoraAdapter& adapter) const;

  void zero_grad();
  // Runs one micro-batch: returns the summed cross-entropy over its trained tokens and adds
  // grad_scale * d(that sum)/d(A, B) to the gradients.
  double forward_backward(const CudaBatch& batch, float grad_scale);
  // After the optimizer changed the fp32 masters: refreshes their bf16 copies and the LoRA columns folded into the
  // frozen weights.
  void params_changed();

  float* params();  // device, num_params() floats (padding between tensors stays 0)
  float* grads();
  int64_t num_params() const;
  // A device buffer laid out like params() (the optimizer's moments) to or from host tensors in lora_param_refs
  // order (layer, target, A then B), each shaped as the adapter's; the device's own row order of gated attention's
  // q_proj B is undone on the way.
  void copy_flat(float* dev, std::vector<Tensor>& host, bool to_device) const;
  int64_t max_tokens() const;
  const CudaMemoryReport& memory() const;
  int64_t graph_steps() const;  // forward_backward calls that replayed the recorded step (plan option graphs)

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Whether the CUDA training path handles this model and adapter; the reason otherwise (for a clear error).
bool cuda_training_supported(const ModelConfig& config, const LoraConfig& lora, std::string* why);

}  // namespace tune
