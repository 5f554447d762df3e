// The CPU inference engine: an incremental forward pass of qwen2 / qwen3 / qwen3moe with a KV cache. A prompt
// runs as one batch (prefill), then each new token is one decode step over the cached keys and values.
// Weights are those of a Model as loaded: f32 (safetensors), or kept in their GGUF types (model_load_gguf
// with keep_quantized). A GGUF gives llama.cpp's CPU logits to float rounding: the quantized products follow
// the kernel ggml picks for each matrix (quant/dot_fast.h; repacked copies on AVX-512, quant/dot_packed.h,
// same bits), and the other steps ggml's f32 arithmetic: RMSNorm (sum of squares in double, mean and scale in
// f32), RoPE (angles p·base^(-2i/d) built by repeated f32 multiplication, rotation with fused multiply-adds),
// an f16 KV cache with flash attention (infer/attention.h), SwiGLU and the MoE router (softmax, top-k,
// renormalized weights clamped at 2^-14, experts summed in rank order). The final layer's feed-forward runs
// only for the rows whose logits are asked for, as llama.cpp does. Not reproduced: llama.cpp splits a prompt
// longer than its micro-batch (n_ubatch, 512 by default) into several batches, where a last one under 64 rows
// takes the f16 attention path; ggml's vectorized exp in SiLU and softmax (within 2 ulp of expf); its orders
// for f32 matrices and for f16 expert matrices.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "infer/kv_cache.h"
#include "model/lora.h"
#include "model/model.h"
#include "quant/dot_packed.h"

namespace tune {

struct EngineOptions {
  // Positions the cache can hold; 0 = the model's max_position_embeddings (or 4096).
  int64_t context = 0;
  // F16 (llama.cpp's default) or F32 (exact attention, to compare with model_logits).
  DType kv_type = DType::F16;
};

// True when the engine runs every layer of `c` (full attention with a dense or MoE FFN, no shared expert).
bool engine_supports(const ModelConfig& c);

class Engine {
 public:
  // `model` and `lora` (optional PEFT adapter, applied to every targeted linear) must outlive the engine.
  // UnsupportedError for architectures the engine does not run (Qwen3.5's gated attention / Gated DeltaNet)
  // and for weights not on the CPU.
  explicit Engine(const Model& model, const EngineOptions& options = {}, const LoraAdapter* lora = nullptr);

  // Runs `ids` at positions size() .. size()+n-1 as one batch (a prompt, or one token for a decode step),
  // appends their keys and values to the cache and returns the logits (n_logits, V) of the last n_logits of
  // them (1 <= n_logits <= n). ConfigError for an id outside the vocabulary or a sequence longer than the
  // context; the cache is unchanged then.
  Tensor forward(std::span<const int32_t> ids, int64_t n_logits = 1);

  // Positions in the cache.
  int64_t size() const { return cache_.size(); }
  int64_t context() const { return cache_.capacity(); }
  // Forgets positions >= n (a new chat turn keeps the common prefix of the conversation).
  void truncate(int64_t n);
  const ModelConfig& config() const { return model_.config; }

 private:
  // One linear of a layer: weight, bias (may be undefined), LoRA target (-1: none).
  struct Lin {
    const Tensor& w;
    const Tensor& b;
    int target;
  };
  // x W^T (+ b) (+ LoRA) for linears sharing the input x: the quantized ones in one threaded pass.
  std::vector<Tensor> linears(const Tensor& x, int64_t l, std::initializer_list<Lin> lins) const;
  Tensor layer(int64_t l, const Tensor& x, int64_t pos0, int64_t n_out);
  Tensor ffn_dense(int64_t l, const Tensor& h) const;
  Tensor ffn_moe(int64_t l, const Tensor& h) const;

  const Model& model_;
  const LoraAdapter* lora_;
  KvCache cache_;
  // AVX-512 only: repacked copies of the quantized matrices (in one arena), by the address of their data.
  std::unique_ptr<PackedArena> arena_;
  std::unordered_map<const void*, std::unique_ptr<PackedWeights>> packed_;
};

}  // namespace tune
