// Forward pass: embedding -> [norm -> mixer -> residual -> norm -> FFN -> residual] x L -> norm -> head.
#include "model/forward.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/moe_route.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace tune {

namespace {

void add_inplace(const Tensor& x, const Tensor& y) {
  float* a = x.f32();
  const float* b = y.f32();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) a[i] += b[i];
}

const TensorView* opt(const Tensor& t) { return t.defined() ? &t.view() : nullptr; }

// x (T, H) -> out (T, H): full causal GQA attention with optional qkv bias and QK-norm.
void attention_mixer_fwd(const ModelConfig& c, const LayerWeights& w, const Tensor& x, const Tensor& pos,
                         const Tensor& out) {
  const int64_t T = x.size(0), nH = c.num_heads, nKV = c.num_kv_heads, hd = c.head_dim;
  Tensor q = Tensor::empty(DType::F32, {T, nH * hd});
  Tensor k = Tensor::empty(DType::F32, {T, nKV * hd});
  Tensor v = Tensor::empty(DType::F32, {T, nKV * hd});
  linear_fwd(x, w.attn_q, opt(w.attn_q_bias), q);
  linear_fwd(x, w.attn_k, opt(w.attn_k_bias), k);
  linear_fwd(x, w.attn_v, opt(w.attn_v_bias), v);
  if (c.qk_norm) {
    rmsnorm_fwd(q, w.attn_q_norm, float(c.rms_norm_eps), c.norm_zero_centered, q);
    rmsnorm_fwd(k, w.attn_k_norm, float(c.rms_norm_eps), c.norm_zero_centered, k);
  }
  const Tensor q3 = q.reshape({T, nH, hd}), k3 = k.reshape({T, nKV, hd});
  rope_fwd(q3, pos, c.rotary_dim, c.rope_theta);
  rope_fwd(k3, pos, c.rotary_dim, c.rope_theta);
  Tensor o = Tensor::empty(DType::F32, {T, nH, hd});
  attention_fwd(q3, k3, v.reshape({T, nKV, hd}), nullptr, float(1.0 / std::sqrt(double(hd))), o);
  linear_fwd(o.reshape({T, nH * hd}), w.attn_output, nullptr, out);
}

// x (T, H) -> out (T, H): down(silu(gate x) * up x).
void swiglu_ffn_fwd(const Tensor& x, const Tensor& wg, const Tensor& wu, const Tensor& wd, const Tensor& out) {
  const int64_t T = x.size(0), I = wg.size(0);
  Tensor g = Tensor::empty(DType::F32, {T, I}), u = Tensor::empty(DType::F32, {T, I});
  linear_fwd(x, wg, nullptr, g);
  linear_fwd(x, wu, nullptr, u);
  swiglu_fwd(g, u, g);
  linear_fwd(g, wd, nullptr, out);
}

// Expert e's [rows, cols] slice of a stacked [E, rows, cols] tensor.
Tensor expert_slice(const Tensor& t, int64_t e) { return t.slice_rows(e, e + 1).reshape({t.size(1), t.size(2)}); }

// x (T, H) -> out (T, H): route each token to its top-k experts, run each expert on its tokens, sum weighted.
void moe_ffn_fwd(const ModelConfig& c, const LayerWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t T = x.size(0), H = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  Tensor logits = Tensor::empty(DType::F32, {T, E});
  linear_fwd(x, w.ffn_gate_inp, nullptr, logits);
  Tensor experts = Tensor::empty(DType::I32, {T, k}), weights = Tensor::empty(DType::F32, {T, k});
  moe_route_fwd(logits, c.norm_topk_prob, experts, weights);

  std::memset(out.data(), 0, out.nbytes());
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> rows;  // (token, slot) pairs routed to e
    for (int64_t i = 0; i < T * k; ++i)
      if (experts.ptr<int32_t>()[i] == e) rows.push_back(i);
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    Tensor xe = Tensor::empty(DType::F32, {n, H}), ye = Tensor::empty(DType::F32, {n, H});
    for (int64_t r = 0; r < n; ++r) std::memcpy(xe.f32() + r * H, x.f32() + (rows[size_t(r)] / k) * H, size_t(H) * 4);
    swiglu_ffn_fwd(xe, expert_slice(w.ffn_gate_exps, e), expert_slice(w.ffn_up_exps, e),
                   expert_slice(w.ffn_down_exps, e), ye);
    for (int64_t r = 0; r < n; ++r) {
      const float wt = weights.f32()[rows[size_t(r)]];
      float* o = out.f32() + (rows[size_t(r)] / k) * H;
      const float* y = ye.f32() + r * H;
      for (int64_t j = 0; j < H; ++j) o[j] += wt * y[j];
    }
  }
  if (w.ffn_gate_shexp.defined()) {
    Tensor shared = Tensor::empty(DType::F32, {T, H}), gate = Tensor::empty(DType::F32, {T, 1});
    swiglu_ffn_fwd(x, w.ffn_gate_shexp, w.ffn_up_shexp, w.ffn_down_shexp, shared);
    linear_fwd(x, w.ffn_gate_inp_shexp, nullptr, gate);
    for (int64_t t = 0; t < T; ++t) {
      const float s = 1.0f / (1.0f + std::exp(-gate.f32()[t]));
      for (int64_t j = 0; j < H; ++j) out.f32()[t * H + j] += s * shared.f32()[t * H + j];
    }
  }
}

}  // namespace

Tensor model_logits(const Model& model, std::span<const int32_t> ids) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  if (w.token_embd.device() != Device::CPU || w.token_embd.dtype() != DType::F32) {
    throw UnsupportedError("the reference forward pass runs on f32 CPU weights", "load the model with --device cpu");
  }
  const int64_t T = int64_t(ids.size()), H = c.hidden_size;
  if (T == 0) throw ConfigError("no token ids given", "pass at least one id");
  Tensor id = Tensor::empty(DType::I32, {T}), pos = Tensor::empty(DType::I32, {T});
  for (int64_t t = 0; t < T; ++t) {
    id.ptr<int32_t>()[t] = ids[size_t(t)];
    pos.ptr<int32_t>()[t] = int32_t(t);
  }
  Tensor x = Tensor::empty(DType::F32, {T, H}), h = Tensor::empty(DType::F32, {T, H});
  Tensor y = Tensor::empty(DType::F32, {T, H});
  embedding_fwd(id, w.token_embd, x);
  const float eps = float(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerSpec& ls = c.layers[size_t(l)];
    const LayerWeights& lw = w.layers[size_t(l)];
    rmsnorm_fwd(x, lw.attn_norm, eps, c.norm_zero_centered, h);
    if (ls.mixer != MixerKind::Attention) {
      throw UnsupportedError(std::string("layer ") + std::to_string(l) + " is " + mixer_kind_name(ls.mixer) +
                                 ", which the forward pass does not run yet",
                             "Qwen3.5 models can be inspected with tune info; qwen2, qwen3 and qwen3_moe run");
    }
    attention_mixer_fwd(c, lw, h, pos, y);
    add_inplace(x, y);
    rmsnorm_fwd(x, lw.ffn_norm, eps, c.norm_zero_centered, h);
    if (ls.ffn == FfnKind::Dense) {
      swiglu_ffn_fwd(h, lw.ffn_gate, lw.ffn_up, lw.ffn_down, y);
    } else {
      moe_ffn_fwd(c, lw, h, y);
    }
    add_inplace(x, y);
  }
  rmsnorm_fwd(x, w.output_norm, eps, c.norm_zero_centered, h);
  Tensor logits = Tensor::empty(DType::F32, {T, c.vocab_size});
  linear_fwd(h, w.output, nullptr, logits);
  return logits;
}

}  // namespace tune
