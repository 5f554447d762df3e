// Model weights as named tensors, one struct field per tensor. Internal names follow GGUF
// (`blk.N.attn_q.weight`); names.h maps them to Hugging Face names. Linear weights keep PyTorch's [out, in] order.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tune {

struct LayerWeights {
  Tensor attn_norm;  // [H] input_layernorm
  Tensor ffn_norm;   // [H] post_attention_layernorm

  // Full / gated attention. Gated attention's q rows interleave per head: [query_h (hd) | gate_h (hd)].
  Tensor attn_q, attn_q_bias;  // [q_dim, H], [q_dim]
  Tensor attn_k, attn_k_bias;  // [nKV*hd, H], [nKV*hd]
  Tensor attn_v, attn_v_bias;  // [nKV*hd, H], [nKV*hd]
  Tensor attn_output;          // [H, nH*hd]
  Tensor attn_q_norm, attn_k_norm;  // [hd]

  // Gated DeltaNet (Qwen3.5 linear attention).
  Tensor ssm_qkv;      // [2*key_dim + value_dim, H] in_proj_qkv
  Tensor ssm_gate;     // [value_dim, H] in_proj_z
  Tensor ssm_beta;     // [nV, H] in_proj_b
  Tensor ssm_alpha;    // [nV, H] in_proj_a
  Tensor ssm_conv1d;   // [conv_dim, K] depthwise causal conv (HF stores [conv_dim, 1, K])
  Tensor ssm_dt_bias;  // [nV]
  Tensor ssm_a_log;    // [nV] A_log (GGUF stores -exp(A_log))
  Tensor ssm_norm;     // [dv] gated RMSNorm weight (plain, not zero-centred)
  Tensor ssm_out;      // [H, value_dim] out_proj

  // Dense SwiGLU FFN.
  Tensor ffn_gate, ffn_up;  // [I, H]
  Tensor ffn_down;          // [H, I]

  // MoE: router and stacked experts; optional sigmoid-gated shared expert (Qwen3.5-MoE).
  Tensor ffn_gate_inp;                    // [E, H]
  Tensor ffn_gate_exps, ffn_up_exps;      // [E, I_moe, H]
  Tensor ffn_down_exps;                   // [E, H, I_moe]
  Tensor ffn_gate_inp_shexp;              // [1, H]
  Tensor ffn_gate_shexp, ffn_up_shexp;    // [I_sh, H]
  Tensor ffn_down_shexp;                  // [H, I_sh]
};

struct ModelWeights {
  Tensor token_embd;   // [V, H]
  Tensor output_norm;  // [H]
  Tensor output;       // [V, H]; shares token_embd's storage when embeddings are tied
  std::vector<LayerWeights> layers;
};

}  // namespace tune
