// Engine: one straight sequence of steps per layer over buffers of the batch's rows; the element-wise steps
// reproduce ggml's f32 arithmetic (see engine.h); the products with quantized / f16 matrices run on
// quant/dot_fast.h (packed copies on AVX-512), f32 ones on linear_fwd.
#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "core/error.h"
#include "infer/attention.h"
#include "ops/linear.h"
#include "quant/cpu_features.h"
#include "quant/dot_fast.h"

namespace tune {

namespace {

Tensor f32(Shape s) {
  return Tensor::empty(DType::F32, s);
}

// ggml_rms_norm (+ the fused mul): sum of f32 squares in double, mean and 1/sqrt in f32, then x * scale * w.
// x (rows, n) -> y (rows, n); y may alias x.
void rmsnorm(const float* x, const float* w, float eps, int64_t rows, int64_t n, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += double(xr[i] * xr[i]);
    const float mean = float(sum / double(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

// ggml_rope, NEOX mode (Qwen): for position p the angle of pair i is p·s^i with s = base^(-2/n_dims) in f32,
// accumulated by repeated multiplication; pair (i, i + n_dims/2) is rotated as ggml's compiled code does it
// (x0·c − x1·s and x0·s + x1·c, each with one fused multiply-add). Dimensions past n_dims pass through.
// x (T, heads, hd) in place; row t has position pos0 + t.
void rope_neox(float* x, int64_t T, int64_t heads, int64_t hd, int64_t n_dims, int64_t pos0, float base) {
  const int64_t half = n_dims / 2;
  const float theta_scale = std::pow(base, -2.0f / float(n_dims));
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    float theta = float(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      cs[size_t(i)] = std::cos(theta);
      sn[size_t(i)] = std::sin(theta);
      theta *= theta_scale;
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half], c = cs[size_t(i)], s = sn[size_t(i)];
        v[i] = std::fma(x0, c, -(x1 * s));
        v[i + half] = std::fma(x0, s, x1 * c);
      }
    }
  }
}

// ggml_swiglu_split: silu(g) * u with silu(x) = x / (1 + e^-x). g (n) is overwritten with the result.
void swiglu(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// ggml_soft_max of one row: exp(x - max) in f32, summed in double, times the f32 of 1/sum.
void softmax(const float* x, float* y, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(y[i] = std::exp(x[i] - mx));
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

// y += s · x (n values).
void add_into(float* y, const float* x, int64_t n, float s = 1.0f) {
  if (s == 1.0f) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
  }
}

const TensorView* opt(const Tensor& t) {
  return t.defined() ? &t.view() : nullptr;
}

Tensor expert_slice(const Tensor& t, int64_t e) {
  return t.slice_rows(e, e + 1).reshape({t.size(1), t.size(2)});
}

// y = x W^T for an MoE expert matrix: the split-mins order of llama.cpp's interleaved Q4_K kernels where it
// uses them (quant/dot_fast.h), linear_fwd otherwise.
void expert_linear(const Tensor& x, const Tensor& w, const Tensor& y) {
  DotOrder order;
  if (vec_dot_fast_plan(w.dtype(), w.size(0), w.size(1), true, &order)) {
    const FastMatmul m{w.data(), w.dtype(), w.size(0), order, nullptr, y.f32()};
    vec_dot_fast_matmul(x.f32(), x.size(0), x.size(1), {&m, 1});
    return;
  }
  linear_fwd(x, w, nullptr, y);
}

// The cache capacity, after checking what the engine needs of the model and the options.
int64_t checked_capacity(const Model& model, const EngineOptions& options) {
  const ModelConfig& c = model.config;
  if (!engine_supports(c))
    throw UnsupportedError(std::string("the inference engine runs qwen2, qwen3 and qwen3_moe models, not ") +
                               arch_name(c.arch) + " (gated attention, Gated DeltaNet or shared experts)",
                           "tune logits computes any model without a KV cache");
  if (model.weights.token_embd.device() != Device::CPU || model.weights.token_embd.dtype() != DType::F32)
    throw UnsupportedError("the inference engine runs on the CPU with an f32 embedding table",
                           "load the model on the CPU");
  if (options.kv_type != DType::F16 && options.kv_type != DType::F32)
    throw ConfigError(std::string("KV cache type ") + dtype_name(options.kv_type) + " is not supported",
                      "use f16 or f32");
  if (options.context < 0) throw ConfigError("the context must be positive");
  if (options.context > 0) return options.context;
  return c.max_position_embeddings > 0 ? c.max_position_embeddings : 4096;
}

}  // namespace

bool engine_supports(const ModelConfig& c) {
  if (c.shared_expert_intermediate_size > 0 || c.norm_zero_centered) return false;
  return std::all_of(c.layers.begin(), c.layers.end(),
                     [](const LayerSpec& s) { return s.mixer == MixerKind::Attention; });
}

Engine::Engine(const Model& model, const EngineOptions& options, const LoraAdapter* lora)
    : model_(model),
      lora_(lora),
      cache_(model.config.num_layers, model.config.kv_dim(), checked_capacity(model, options),
             options.kv_type) {
  if (simd_level() != SimdLevel::Avx512) return;
  std::vector<const Tensor*> mats;
  for (const LayerWeights& w : model.weights.layers)
    for (const Tensor* t :
         {&w.attn_q, &w.attn_k, &w.attn_v, &w.attn_output, &w.ffn_gate, &w.ffn_up, &w.ffn_down})
      mats.push_back(t);
  mats.push_back(&model.weights.output);
  auto packable = [](const Tensor& w) {
    DotOrder order;
    return w.defined() && w.ndim() == 2 &&
           vec_dot_fast_plan(w.dtype(), w.size(0), w.size(1), false, &order) &&
           PackedWeights::supported(w.dtype(), w.size(0), w.size(1));
  };
  size_t bytes = 0;
  for (const Tensor* t : mats)
    if (packable(*t)) bytes += PackedWeights::bytes_for(t->dtype(), t->size(0), t->size(1));
  arena_ = std::make_unique<PackedArena>(bytes);
  for (const Tensor* t : mats) {
    if (!packable(*t) || packed_.count(t->data())) continue;
    uint8_t* storage = arena_->take(PackedWeights::bytes_for(t->dtype(), t->size(0), t->size(1)));
    packed_.emplace(t->data(),
                    std::make_unique<PackedWeights>(t->dtype(), t->data(), t->size(0), t->size(1), storage));
  }
}

void Engine::truncate(int64_t n) {
  cache_.set_size(std::clamp<int64_t>(n, 0, cache_.size()));
}

// y = x W^T + b, plus the adapter's s · (x A^T) B^T where it targets the linear.
std::vector<Tensor> Engine::linears(const Tensor& x, int64_t l, std::initializer_list<Lin> lins) const {
  const int64_t T = x.size(0), K = x.size(1);
  std::vector<Tensor> ys;
  std::vector<FastMatmul> fast;
  for (const Lin& lin : lins) {
    const int64_t N = lin.w.size(0);
    Tensor y = f32({T, N});
    DotOrder order;
    if (lin.w.dtype() != DType::F32 && vec_dot_fast_plan(lin.w.dtype(), N, K, false, &order)) {
      const auto p = packed_.find(lin.w.data());
      fast.push_back({lin.w.data(), lin.w.dtype(), N, order, lin.b.defined() ? lin.b.f32() : nullptr, y.f32(),
                      p == packed_.end() ? nullptr : p->second.get()});
    } else {
      linear_fwd(x, lin.w, opt(lin.b), y);
    }
    ys.push_back(y);
  }
  if (!fast.empty()) vec_dot_fast_matmul(x.f32(), T, K, fast);
  size_t i = 0;
  for (const Lin& lin : lins) {
    const Tensor& y = ys[i++];
    if (!lora_ || lin.target < 0) continue;
    const LoraWeights& lw = lora_->layers[size_t(l)][size_t(lin.target)];
    if (!lw.defined()) continue;
    Tensor xa = f32({T, lw.A.size(0)}), yl = f32(y.shape());
    linear_fwd(x, lw.A, nullptr, xa);
    linear_fwd(xa, lw.B, nullptr, yl);
    add_into(y.f32(), yl.f32(), y.numel(), float(lora_->config.scale()));
  }
  return ys;
}

Tensor Engine::ffn_dense(int64_t l, const Tensor& h) const {
  const LayerWeights& w = model_.weights.layers[size_t(l)];
  const Tensor none;
  const std::vector<Tensor> gu =
      linears(h, l, {{w.ffn_gate, none, int(LoraTarget::Gate)}, {w.ffn_up, none, int(LoraTarget::Up)}});
  swiglu(gu[0].f32(), gu[1].f32(), gu[0].numel());
  return linears(gu[0], l, {{w.ffn_down, none, int(LoraTarget::Down)}})[0];
}

// Router softmax over E experts, the k largest probabilities (ties to the lower index), renormalized when the
// config says so (their sum clamped at 2^-14 as llama.cpp does); each expert runs once on the rows routed to
// it; a row's output is Σ_j w_j · expert_j(h) added in rank order.
Tensor Engine::ffn_moe(int64_t l, const Tensor& h) const {
  const ModelConfig& c = model_.config;
  const LayerWeights& w = model_.weights.layers[size_t(l)];
  const int64_t T = h.size(0), H = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  Tensor logits = f32({T, E});
  linear_fwd(h, w.ffn_gate_inp, nullptr, logits);
  std::vector<int32_t> sel(static_cast<size_t>(T * k));
  std::vector<float> wt(static_cast<size_t>(T * k)), p(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    softmax(logits.f32() + t * E, p.data(), E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      sel[size_t(t * k + j)] = order[size_t(j)];
      sum += double(wt[size_t(t * k + j)] = p[size_t(order[size_t(j)])]);
    }
    if (c.norm_topk_prob) {
      const float s = std::max(float(sum), 6.103515625e-5f);
      for (int64_t j = 0; j < k; ++j) wt[size_t(t * k + j)] /= s;
    }
  }
  // Expert outputs per (row, rank), then summed in rank order.
  Tensor ys = f32({T * k, H});
  const float scale = lora_ ? float(lora_->config.scale()) : 0.0f;
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> slots;
    for (int64_t i = 0; i < T * k; ++i)
      if (sel[size_t(i)] == e) slots.push_back(i);
    if (slots.empty()) continue;
    const int64_t n = int64_t(slots.size());
    Tensor xe = f32({n, H});
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(xe.f32() + r * H, h.f32() + (slots[size_t(r)] / k) * H, size_t(H) * 4);
    const Tensor wg = expert_slice(w.ffn_gate_exps, e), wu = expert_slice(w.ffn_up_exps, e),
                 wd = expert_slice(w.ffn_down_exps, e);
    const int64_t I = wg.size(0);
    Tensor g = f32({n, I}), u = f32({n, I}), y = f32({n, H});
    expert_linear(xe, wg, g);
    expert_linear(xe, wu, u);
    // Expert LoRA (PEFT target_parameters): gate and up share A_e and take the two row halves of B_e (2I, r).
    const LoraWeights* gu = lora_ ? &lora_->layers[size_t(l)][size_t(LoraTarget::ExpertsGateUp)] : nullptr;
    if (gu && gu->defined()) {
      const Tensor A = expert_slice(gu->A, e), B = expert_slice(gu->B, e);
      Tensor xa = f32({n, A.size(0)}), dg = f32({n, I}), du = f32({n, I});
      linear_fwd(xe, A, nullptr, xa);
      linear_fwd(xa, B.slice_rows(0, I), nullptr, dg);
      linear_fwd(xa, B.slice_rows(I, 2 * I), nullptr, du);
      add_into(g.f32(), dg.f32(), n * I, scale);
      add_into(u.f32(), du.f32(), n * I, scale);
    }
    swiglu(g.f32(), u.f32(), n * I);
    expert_linear(g, wd, y);
    const LoraWeights* dn = lora_ ? &lora_->layers[size_t(l)][size_t(LoraTarget::ExpertsDown)] : nullptr;
    if (dn && dn->defined()) {
      const Tensor A = expert_slice(dn->A, e), B = expert_slice(dn->B, e);
      Tensor xa = f32({n, A.size(0)}), dy = f32({n, H});
      linear_fwd(g, A, nullptr, xa);
      linear_fwd(xa, B, nullptr, dy);
      add_into(y.f32(), dy.f32(), n * H, scale);
    }
    for (int64_t r = 0; r < n; ++r) {
      const int64_t slot = slots[size_t(r)];
      const float wv = wt[size_t(slot)];
      float* dst = ys.f32() + slot * H;
      const float* src = y.f32() + r * H;
      for (int64_t i = 0; i < H; ++i) dst[i] = src[i] * wv;
    }
  }
  Tensor out = f32({T, H});
  for (int64_t t = 0; t < T; ++t) {
    float* o = out.f32() + t * H;
    std::memcpy(o, ys.f32() + t * k * H, size_t(H) * 4);
    for (int64_t j = 1; j < k; ++j) add_into(o, ys.f32() + (t * k + j) * H, H);
  }
  return out;
}

// Layer l on the batch x (T, H) at positions pos0..: attention over the cache, then (for the last n_out rows
// only) the output projection, residual, FFN and residual. Returns (n_out, H).
Tensor Engine::layer(int64_t l, const Tensor& x, int64_t pos0, int64_t n_out) {
  const ModelConfig& c = model_.config;
  const LayerWeights& w = model_.weights.layers[size_t(l)];
  const int64_t T = x.size(0), H = c.hidden_size, nH = c.num_heads, nKV = c.num_kv_heads, hd = c.head_dim;
  const float eps = float(c.rms_norm_eps);

  Tensor h = f32({T, H});
  rmsnorm(x.f32(), w.attn_norm.f32(), eps, T, H, h.f32());
  const std::vector<Tensor> qkv = linears(h, l,
                                          {{w.attn_q, w.attn_q_bias, int(LoraTarget::Q)},
                                           {w.attn_k, w.attn_k_bias, int(LoraTarget::K)},
                                           {w.attn_v, w.attn_v_bias, int(LoraTarget::V)}});
  const Tensor &q = qkv[0], &k = qkv[1], &v = qkv[2];
  if (c.qk_norm) {
    rmsnorm(q.f32(), w.attn_q_norm.f32(), eps, T * nH, hd, q.f32());
    rmsnorm(k.f32(), w.attn_k_norm.f32(), eps, T * nKV, hd, k.f32());
  }
  rope_neox(q.f32(), T, nH, hd, c.rotary_dim, pos0, float(c.rope_theta));
  rope_neox(k.f32(), T, nKV, hd, c.rotary_dim, pos0, float(c.rope_theta));
  cache_.write(l, pos0, k.f32(), v.f32(), T);
  Tensor o = f32({T, nH * hd});
  attention_cached(cache_, l, q.f32(), T, pos0, nH, nKV, hd, 1.0f / std::sqrt(float(hd)), o.f32());

  const Tensor o_out = o.slice_rows(T - n_out, T), x_out = x.slice_rows(T - n_out, T);
  const Tensor none;
  const Tensor xm = linears(o_out, l, {{w.attn_output, none, int(LoraTarget::O)}})[0];
  add_into(xm.f32(), x_out.f32(), n_out * H);
  Tensor h2 = f32({n_out, H});
  rmsnorm(xm.f32(), w.ffn_norm.f32(), eps, n_out, H, h2.f32());
  Tensor y = c.layers[size_t(l)].ffn == FfnKind::Dense ? ffn_dense(l, h2) : ffn_moe(l, h2);
  add_into(y.f32(), xm.f32(), n_out * H);
  return y;
}

Tensor Engine::forward(std::span<const int32_t> ids, int64_t n_logits) {
  const ModelConfig& c = model_.config;
  const int64_t T = int64_t(ids.size()), H = c.hidden_size, V = model_.weights.token_embd.size(0);
  if (T == 0) throw ConfigError("no token ids given", "pass at least one id");
  TUNE_CHECK(n_logits >= 1 && n_logits <= T) << "n_logits " << n_logits << " of " << T;
  const int64_t pos0 = cache_.size();
  cache_.reserve(pos0 + T);
  Tensor x = f32({T, H});
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = ids[size_t(t)];
    if (id < 0 || id >= V)
      throw ConfigError("token id " + std::to_string(id) + " at position " + std::to_string(pos0 + t) +
                            " is outside the vocabulary of " + std::to_string(V) + " ids",
                        "use the model's own tokenizer");
    std::memcpy(x.f32() + t * H, model_.weights.token_embd.f32() + int64_t(id) * H, size_t(H) * 4);
  }
  for (int64_t l = 0; l < c.num_layers; ++l) x = layer(l, x, pos0, l + 1 == c.num_layers ? n_logits : T);
  cache_.set_size(pos0 + T);
  rmsnorm(x.f32(), model_.weights.output_norm.f32(), float(c.rms_norm_eps), n_logits, H, x.f32());
  const Tensor none;
  return linears(x, -1, {{model_.weights.output, none, -1}})[0];
}

}  // namespace tune
