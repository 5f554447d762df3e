// The model's forward and backward. The backward walks the layers in reverse with the activations the forward kept.
#include "model/forward.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "model/names.h"
#include "ops/attention.h"
#include "ops/conv1d_causal.h"
#include "ops/cpu/activation.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/gated_delta_rule.h"
#include "ops/linear.h"
#include "ops/moe_route.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace tune {

namespace {

Tensor f32(Shape s) { return Tensor::empty(DType::F32, s); }

void add_inplace(const Tensor& x, const Tensor& y) {
  float* a = x.f32();
  const float* b = y.f32();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) a[i] += b[i];
}

const TensorView* opt(const Tensor& t) { return t.defined() ? &t.view() : nullptr; }
const TensorView* opt(const Tensor* t) { return t ? &t->view() : nullptr; }

thread_local const LinearObserver* t_linear_observer = nullptr;

void observe_linear(const Tensor& x, const Tensor& w) {
  if (t_linear_observer) (*t_linear_observer)(x, w);
}

// ---------------------------------------------------------------------------------------------------------------
// Linear with an optional LoRA branch: y = x W^T + b + s * (drop(x) A^T) B^T.
struct LoraCtx {
  const LoraWeights* w = nullptr;  // null: plain linear
  float scale = 0;
  float dropout = 0;
  Rng* rng = nullptr;
};

struct LinearActs {
  Tensor xd;                    // dropout(x), only when dropout is on
  std::vector<uint8_t> kept;    // its mask
  Tensor xa;                    // drop(x) A^T (T, r)
};

void lora_linear_fwd(const Tensor& x, const Tensor& w, const Tensor& b, const LoraCtx& lc, const Tensor& y,
                     LinearActs* acts) {
  observe_linear(x, w);
  linear_fwd(x, w, opt(b), y);
  if (!lc.w) return;
  const int64_t T = x.size(0), r = lc.w->A.size(0);
  Tensor xin = x;
  std::vector<uint8_t> kept;
  if (lc.dropout > 0 && lc.rng) {
    xin = f32(x.shape());
    kept.resize(size_t(x.numel()));
    const float keep = 1.0f - lc.dropout;
    for (int64_t i = 0; i < x.numel(); ++i) {
      kept[size_t(i)] = lc.rng->uniform() < keep;
      xin.f32()[i] = kept[size_t(i)] ? x.f32()[i] / keep : 0.0f;
    }
  }
  Tensor xa = f32({T, r}), yl = f32(y.shape());
  linear_fwd(xin, lc.w->A, nullptr, xa);
  linear_fwd(xa, lc.w->B, nullptr, yl);
  for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] += lc.scale * yl.f32()[i];
  if (acts) {
    acts->xd = xin.data() == x.data() ? Tensor() : xin;
    acts->kept = std::move(kept);
    acts->xa = xa;
  }
}

// dy (T, out) -> dx (T, in) (overwritten or accumulated); LoRA gradients added to dA, dB.
void lora_linear_bwd(const Tensor& x, const Tensor& w, const LoraCtx& lc, const LinearActs& acts, const Tensor& dy,
                     const Tensor& dx, bool accumulate_dx) {
  linear_bwd(x, w, dy, &dx.view(), accumulate_dx, nullptr, nullptr);
  if (!lc.w) return;
  LoraWeights& lw = const_cast<LoraWeights&>(*lc.w);
  const int64_t T = x.size(0), r = lw.A.size(0);
  Tensor dys = f32(dy.shape()), dxa = f32({T, r});
  for (int64_t i = 0; i < dy.numel(); ++i) dys.f32()[i] = lc.scale * dy.f32()[i];
  linear_bwd(acts.xa, lw.B, dys, &dxa.view(), false, &lw.dB.view(), nullptr);
  const Tensor& xin = acts.xd.defined() ? acts.xd : x;
  if (!acts.xd.defined()) {
    linear_bwd(xin, lw.A, dxa, &dx.view(), true, &lw.dA.view(), nullptr);
    return;
  }
  // Through dropout: dx += mask / keep * (dxa A).
  Tensor dxd = f32(x.shape());
  linear_bwd(xin, lw.A, dxa, &dxd.view(), false, &lw.dA.view(), nullptr);
  const float keep = 1.0f - lc.dropout;
  for (int64_t i = 0; i < x.numel(); ++i)
    if (acts.kept[size_t(i)]) dx.f32()[i] += dxd.f32()[i] / keep;
}

// ---------------------------------------------------------------------------------------------------------------
struct LayerActs {
  Tensor x;              // (T, H) layer input
  Tensor h1;             // input_layernorm(x)
  Tensor q, k, v;        // projections (T, nH*hd), (T, nKV*hd)
  Tensor qn, kn;         // after QK-norm, before RoPE
  Tensor qr, kr;         // after RoPE: what attention saw
  Tensor gate;           // gated attention: the output gate logits (T, nH*hd)
  Tensor o_attn;         // gated attention: the attention output before the gate (T, nH*hd)
  // o: the mixer output, the input of o_proj / out_proj: attention output (T, nH*hd), times sigmoid(gate) for
  // gated attention; Gated DeltaNet: the gated RMSNorm's output (T, nV*dv).
  Tensor o;
  // Gated DeltaNet.
  Tensor qkv;            // in_proj_qkv(h1) (T, conv_dim), before the causal conv
  Tensor conv;           // the causal conv's output before SiLU (T, conv_dim)
  Tensor gq, gk, gv;     // what the recurrence saw: (T, nV, dk), (T, nV, dk), (T, nV, dv)
  Tensor go;             // the recurrence's output (T, nV, dv), before the gated RMSNorm
  Tensor a_pre;          // in_proj_a(h1) (T, nV)
  Tensor z, beta, logdecay;  // output gate (T, nV*dv), sigmoid(b) (T, nV), g = log-decay (T, nV)
  Tensor xm;             // x + o_proj(o)
  Tensor h2;             // post_attention_layernorm(xm)
  Tensor g, u, a;        // dense FFN: gate, up, silu(gate) * up
  Tensor route_logits;   // MoE router (T, E)
  Tensor experts, weights;  // MoE selection (T, k) i32 / f32
  // Shared expert: gate, up, silu(gate)*up, its output, its gate logit (T, 1).
  Tensor sh_g, sh_u, sh_a, sh_out, sh_gate;
  std::array<LinearActs, kLoraTargets> lin;
};

struct Ctx {
  const ModelConfig& c;
  const LoraAdapter* lora;
  Rng* rng;
  const Tensor& pos;        // (T) i32
  const Tensor* doc_start;  // (T) i32 or null
  LoraCtx lora_ctx(int64_t layer, LoraTarget t) const {
    LoraCtx lc;
    if (!lora) return lc;
    const LoraWeights& w = lora->layers[size_t(layer)][size_t(t)];
    if (!w.defined()) return lc;
    lc.w = &w;
    lc.scale = float(lora->config.scale());
    lc.dropout = float(lora->config.dropout);
    lc.rng = rng;
    return lc;
  }
};

Tensor expert_slice(const Tensor& t, int64_t e) { return t.slice_rows(e, e + 1).reshape({t.size(1), t.size(2)}); }

// Expert e's LoRA as three plain LoRA linears (views into the adapter's tensors): gate and up share A_e and take
// the two row halves of the fused B_e (2I, r); no dropout on experts (PEFT applies them as weight deltas).
struct ExpertLora {
  LoraWeights gate, up, down;
  LoraCtx cg, cu, cd;
};

void expert_lora(const Ctx& cx, int64_t l, int64_t e, ExpertLora& el) {
  if (!cx.lora) return;
  const auto& layer = cx.lora->layers[size_t(l)];
  const float scale = float(cx.lora->config.scale());
  const LoraWeights& gu = layer[size_t(LoraTarget::ExpertsGateUp)];
  if (gu.defined()) {
    const int64_t I = gu.B.size(1) / 2;
    const Tensor A = expert_slice(gu.A, e), dA = expert_slice(gu.dA, e);
    const Tensor B = expert_slice(gu.B, e), dB = expert_slice(gu.dB, e);
    el.gate = {A, B.slice_rows(0, I), dA, dB.slice_rows(0, I)};
    el.up = {A, B.slice_rows(I, 2 * I), dA, dB.slice_rows(I, 2 * I)};
    el.cg = {&el.gate, scale, 0.0f, nullptr};
    el.cu = {&el.up, scale, 0.0f, nullptr};
  }
  const LoraWeights& dn = layer[size_t(LoraTarget::ExpertsDown)];
  if (dn.defined()) {
    el.down = {expert_slice(dn.A, e), expert_slice(dn.B, e), expert_slice(dn.dA, e), expert_slice(dn.dB, e)};
    el.cd = {&el.down, scale, 0.0f, nullptr};
  }
}

// Rows of `x` routed to expert e, as (token, slot) indices into the (T, k) selection.
std::vector<int64_t> expert_rows(const Tensor& experts, int64_t e) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < experts.numel(); ++i)
    if (experts.ptr<int32_t>()[i] == e) rows.push_back(i);
  return rows;
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows, int64_t k) {
  const int64_t H = x.size(1);
  Tensor out = f32({int64_t(rows.size()), H});
  for (size_t r = 0; r < rows.size(); ++r) std::memcpy(out.f32() + r * H, x.f32() + (rows[r] / k) * H, size_t(H) * 4);
  return out;
}

using cpu::dsilu;
using cpu::sigmoid;
using cpu::silu;
using cpu::softplus;

// Full attention (Qwen2/Qwen3) and Qwen3.5's gated attention: s.h1 -> s.xm = o_proj(o) (no residual yet).
// Gated attention's q_proj rows interleave per head [query_h (hd) | gate_h (hd)]; o is multiplied by sigmoid(gate)
// before o_proj. QK-norm is zero-centred for Qwen3.5 (c.norm_zero_centered); RoPE covers c.rotary_dim dims.
void attention_mixer_fwd(const Ctx& cx, const LayerWeights& w, int64_t l, LayerActs& s) {
  const ModelConfig& c = cx.c;
  const MixerKind kind = c.layers[size_t(l)].mixer;
  const int64_t T = s.x.size(0), H = c.hidden_size, nH = c.num_heads, nKV = c.num_kv_heads, hd = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  const bool gated = kind == MixerKind::GatedAttention;
  s.q = f32({T, nH * hd});
  s.k = f32({T, nKV * hd});
  s.v = f32({T, nKV * hd});
  if (gated) {
    Tensor qg = f32({T, c.q_dim(kind)});
    lora_linear_fwd(s.h1, w.attn_q, w.attn_q_bias, cx.lora_ctx(l, LoraTarget::Q), qg, &s.lin[0]);
    s.gate = f32({T, nH * hd});
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nH; ++h) {
        const float* src = qg.f32() + (t * nH + h) * 2 * hd;
        std::memcpy(s.q.f32() + (t * nH + h) * hd, src, size_t(hd) * 4);
        std::memcpy(s.gate.f32() + (t * nH + h) * hd, src + hd, size_t(hd) * 4);
      }
  } else {
    lora_linear_fwd(s.h1, w.attn_q, w.attn_q_bias, cx.lora_ctx(l, LoraTarget::Q), s.q, &s.lin[0]);
  }
  lora_linear_fwd(s.h1, w.attn_k, w.attn_k_bias, cx.lora_ctx(l, LoraTarget::K), s.k, &s.lin[1]);
  lora_linear_fwd(s.h1, w.attn_v, w.attn_v_bias, cx.lora_ctx(l, LoraTarget::V), s.v, &s.lin[2]);
  s.qn = s.q;
  s.kn = s.k;
  if (c.qk_norm) {
    s.qn = f32(s.q.shape());
    s.kn = f32(s.k.shape());
    rmsnorm_fwd(s.q, w.attn_q_norm, eps, c.norm_zero_centered, s.qn);
    rmsnorm_fwd(s.k, w.attn_k_norm, eps, c.norm_zero_centered, s.kn);
  }
  s.qr = s.qn.clone().reshape({T, nH, hd});
  s.kr = s.kn.clone().reshape({T, nKV, hd});
  rope_fwd(s.qr, cx.pos, c.rotary_dim, c.rope_theta);
  rope_fwd(s.kr, cx.pos, c.rotary_dim, c.rope_theta);
  s.o = f32({T, nH, hd});
  attention_fwd(s.qr, s.kr, s.v.reshape({T, nKV, hd}), opt(cx.doc_start), float(1.0 / std::sqrt(double(hd))),
                s.o);
  s.o = s.o.reshape({T, nH * hd});
  if (gated) {
    s.o_attn = s.o.clone();
    float* o = s.o.f32();
    const float* gt = s.gate.f32();
    for (int64_t i = 0; i < s.o.numel(); ++i) o[i] = float(double(o[i]) * sigmoid(double(gt[i])));
  }
  s.xm = f32({T, H});
  lora_linear_fwd(s.o, w.attn_output, Tensor(), cx.lora_ctx(l, LoraTarget::O), s.xm, &s.lin[3]);
}

// Gated DeltaNet (Qwen3.5 linear attention): s.h1 -> s.xm = out_proj(...) (no residual yet). See
// the Qwen architecture reference, section 3.2 (Gated DeltaNet). Value head h reads key head h / (nV / nK) (repeat_interleave).
void gdn_mixer_fwd(const Ctx& cx, const LayerWeights& w, int64_t l, LayerActs& s) {
  const ModelConfig& c = cx.c;
  const int64_t T = s.x.size(0), H = c.hidden_size;
  const int64_t nK = c.linear_num_key_heads, nV = c.linear_num_value_heads, dk = c.linear_key_head_dim,
                dv = c.linear_value_head_dim;
  const int64_t key_dim = nK * dk, value_dim = nV * dv, conv_dim = 2 * key_dim + value_dim, r = nV / nK;
  auto lin = [&](LoraTarget t) { return &s.lin[size_t(t)]; };
  // Projections (each may carry LoRA).
  s.qkv = f32({T, conv_dim});
  s.z = f32({T, value_dim});
  Tensor b = f32({T, nV}), a = f32({T, nV});
  lora_linear_fwd(s.h1, w.ssm_qkv, Tensor(), cx.lora_ctx(l, LoraTarget::LinQkv), s.qkv,
                  lin(LoraTarget::LinQkv));
  lora_linear_fwd(s.h1, w.ssm_gate, Tensor(), cx.lora_ctx(l, LoraTarget::LinZ), s.z, lin(LoraTarget::LinZ));
  lora_linear_fwd(s.h1, w.ssm_beta, Tensor(), cx.lora_ctx(l, LoraTarget::LinB), b, lin(LoraTarget::LinB));
  lora_linear_fwd(s.h1, w.ssm_alpha, Tensor(), cx.lora_ctx(l, LoraTarget::LinA), a, lin(LoraTarget::LinA));
  s.a_pre = a;
  // Causal depthwise conv over time, then SiLU.
  s.conv = f32({T, conv_dim});
  conv1d_causal_fwd(s.qkv, w.ssm_conv1d, opt(cx.doc_start), s.conv);
  Tensor conv = f32({T, conv_dim});
  for (int64_t i = 0; i < conv.numel(); ++i) conv.f32()[i] = float(silu(double(s.conv.f32()[i])));
  // beta = sigmoid(b); g = -exp(A_log) * softplus(a + dt_bias).
  s.beta = f32({T, nV});
  s.logdecay = f32({T, nV});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      s.beta.f32()[t * nV + h] = float(sigmoid(double(b.f32()[t * nV + h])));
      const double A = std::exp(double(w.ssm_a_log.f32()[h]));
      s.logdecay.f32()[t * nV + h] =
          float(-A * softplus(double(a.f32()[t * nV + h]) + double(w.ssm_dt_bias.f32()[h])));
    }
  // Split q | k | v, repeat q and k to the value heads, L2-normalize them (rsqrt(sum + 1e-6)), q *= dk^-0.5.
  Tensor q = f32({T, nV, dk}), k = f32({T, nV, dk}), v = f32({T, nV, dv});
  const double qscale = 1.0 / std::sqrt(double(dk));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = conv.f32() + t * conv_dim;
    for (int64_t h = 0; h < nV; ++h) {
      const int64_t kh = h / r;
      for (int which = 0; which < 2; ++which) {
        const float* src = row + which * key_dim + kh * dk;
        double ss = 0;
        for (int64_t i = 0; i < dk; ++i) ss += double(src[i]) * src[i];
        const double inv = 1.0 / std::sqrt(ss + 1e-6) * (which == 0 ? qscale : 1.0);
        float* dst = (which == 0 ? q : k).f32() + (t * nV + h) * dk;
        for (int64_t i = 0; i < dk; ++i) dst[i] = float(double(src[i]) * inv);
      }
      std::memcpy(v.f32() + (t * nV + h) * dv, row + 2 * key_dim + h * dv, size_t(dv) * 4);
    }
  }
  Tensor o = f32({T, nV, dv});
  gated_delta_rule_fwd(q, k, v, s.logdecay, s.beta, opt(cx.doc_start), o);
  s.gq = q;
  s.gk = k;
  s.gv = v;
  s.go = o;
  // Gated RMSNorm per value head: ssm_norm (plain weight) * rmsnorm(o) * silu(z), eps = rms_norm_eps.
  s.o = f32({T, value_dim});
  for (int64_t i = 0; i < T * nV; ++i) {
    const float* oi = o.f32() + i * dv;
    const float* zi = s.z.f32() + i * dv;
    float* yi = s.o.f32() + i * dv;
    double ss = 0;
    for (int64_t j = 0; j < dv; ++j) ss += double(oi[j]) * oi[j];
    const double inv = 1.0 / std::sqrt(ss / double(dv) + c.rms_norm_eps);
    for (int64_t j = 0; j < dv; ++j)
      yi[j] = float(double(w.ssm_norm.f32()[j]) * double(oi[j]) * inv * silu(double(zi[j])));
  }
  s.xm = f32({T, H});
  lora_linear_fwd(s.o, w.ssm_out, Tensor(), cx.lora_ctx(l, LoraTarget::LinOut), s.xm,
                  lin(LoraTarget::LinOut));
}

// Gated DeltaNet backward: dxm (T, H) = gradient of out_proj's output -> dh1 (T, H) (overwritten); LoRA
// gradients added. Frozen: conv1d, A_log, dt_bias, the gated norm's weight.
void gdn_mixer_bwd(const Ctx& cx, const LayerWeights& w, int64_t l, const LayerActs& s, const Tensor& dxm,
                   const Tensor& dh1) {
  const ModelConfig& c = cx.c;
  const int64_t T = s.x.size(0);
  const int64_t nK = c.linear_num_key_heads, nV = c.linear_num_value_heads, dk = c.linear_key_head_dim,
                dv = c.linear_value_head_dim;
  const int64_t key_dim = nK * dk, value_dim = nV * dv, conv_dim = 2 * key_dim + value_dim, r = nV / nK;
  auto lin = [&](LoraTarget t) -> const LinearActs& { return s.lin[size_t(t)]; };
  // out_proj.
  Tensor dy = f32({T, value_dim});
  lora_linear_bwd(s.o, w.ssm_out, cx.lora_ctx(l, LoraTarget::LinOut), lin(LoraTarget::LinOut), dxm, dy,
                  false);
  // Gated RMSNorm: y = w * o * inv * silu(z).
  Tensor dz = f32({T, value_dim}), dgo = f32({T, nV, dv});
  const float* nw = w.ssm_norm.f32();
  for (int64_t i = 0; i < T * nV; ++i) {
    const float* oi = s.go.f32() + i * dv;
    const float* zi = s.z.f32() + i * dv;
    const float* dyi = dy.f32() + i * dv;
    double ss = 0;
    for (int64_t j = 0; j < dv; ++j) ss += double(oi[j]) * oi[j];
    const double inv = 1.0 / std::sqrt(ss / double(dv) + c.rms_norm_eps);
    double dot = 0;  // sum_j dn_j o_j
    std::vector<double> dn(static_cast<size_t>(dv));
    for (int64_t j = 0; j < dv; ++j) {
      const double z = zi[j];
      dz.f32()[i * dv + j] = float(double(dyi[j]) * nw[j] * double(oi[j]) * inv * dsilu(z));
      dn[size_t(j)] = double(dyi[j]) * nw[j] * silu(z);
      dot += dn[size_t(j)] * oi[j];
    }
    for (int64_t j = 0; j < dv; ++j)
      dgo.f32()[i * dv + j] = float(inv * dn[size_t(j)] - double(oi[j]) * inv * inv * inv / double(dv) * dot);
  }
  // The recurrence.
  Tensor dq = f32({T, nV, dk}), dk_ = f32({T, nV, dk}), dvv = f32({T, nV, dv}), dg = f32({T, nV}),
         dbeta = f32({T, nV});
  gated_delta_rule_bwd(s.gq, s.gk, s.gv, s.logdecay, s.beta, opt(cx.doc_start), dgo, dq, dk_, dvv, dg, dbeta);
  // beta = sigmoid(b); g = -exp(A_log) softplus(a + dt_bias).
  Tensor db = f32({T, nV}), da = f32({T, nV});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nV; ++h) {
      const int64_t i = t * nV + h;
      const double be = s.beta.f32()[i];
      db.f32()[i] = float(double(dbeta.f32()[i]) * be * (1.0 - be));
      const double A = std::exp(double(w.ssm_a_log.f32()[h]));
      const double x = double(s.a_pre.f32()[i]) + double(w.ssm_dt_bias.f32()[h]);
      da.f32()[i] = float(double(dg.f32()[i]) * -A * (x > 20.0 ? 1.0 : sigmoid(x)));
    }
  // Back through L2 norm (+ q scale) and the repeat to value heads, into the SiLU'd conv output, then SiLU
  // and conv.
  Tensor dconv = Tensor::zeros(DType::F32, {T, conv_dim});
  const double qscale = 1.0 / std::sqrt(double(dk));
  for (int64_t t = 0; t < T; ++t) {
    float* drow = dconv.f32() + t * conv_dim;
    const float* pre = s.conv.f32() + t * conv_dim;
    for (int64_t h = 0; h < nV; ++h) {
      const int64_t kh = h / r;
      for (int which = 0; which < 2; ++which) {
        const float* pk = pre + which * key_dim + kh * dk;
        std::vector<double> src(static_cast<size_t>(dk));
        double ss = 0;
        for (int64_t i = 0; i < dk; ++i) {
          src[size_t(i)] = silu(double(pk[i]));
          ss += src[size_t(i)] * src[size_t(i)];
        }
        const double inv = 1.0 / std::sqrt(ss + 1e-6), sc = which == 0 ? qscale : 1.0;
        const float* dyv = (which == 0 ? dq : dk_).f32() + (t * nV + h) * dk;
        double dot = 0;
        for (int64_t i = 0; i < dk; ++i) dot += double(dyv[i]) * src[size_t(i)];
        float* dst = drow + which * key_dim + kh * dk;
        for (int64_t i = 0; i < dk; ++i)
          dst[i] += float(sc * (inv * double(dyv[i]) - src[size_t(i)] * inv * inv * inv * dot));
      }
      std::memcpy(drow + 2 * key_dim + h * dv, dvv.f32() + (t * nV + h) * dv, size_t(dv) * 4);
    }
    for (int64_t i = 0; i < conv_dim; ++i) drow[i] = float(double(drow[i]) * dsilu(double(pre[i])));
  }
  Tensor dqkv = f32({T, conv_dim});
  conv1d_causal_bwd(s.qkv, w.ssm_conv1d, opt(cx.doc_start), dconv, dqkv, nullptr);
  // The four input projections.
  lora_linear_bwd(s.h1, w.ssm_qkv, cx.lora_ctx(l, LoraTarget::LinQkv), lin(LoraTarget::LinQkv), dqkv, dh1,
                  false);
  lora_linear_bwd(s.h1, w.ssm_gate, cx.lora_ctx(l, LoraTarget::LinZ), lin(LoraTarget::LinZ), dz, dh1, true);
  lora_linear_bwd(s.h1, w.ssm_beta, cx.lora_ctx(l, LoraTarget::LinB), lin(LoraTarget::LinB), db, dh1, true);
  lora_linear_bwd(s.h1, w.ssm_alpha, cx.lora_ctx(l, LoraTarget::LinA), lin(LoraTarget::LinA), da, dh1, true);
}

void layer_fwd(const Ctx& cx, const LayerWeights& w, int64_t l, LayerActs& s) {
  const ModelConfig& c = cx.c;
  const int64_t T = s.x.size(0), H = c.hidden_size;
  const float eps = float(c.rms_norm_eps);
  s.h1 = f32({T, H});
  rmsnorm_fwd(s.x, w.attn_norm, eps, c.norm_zero_centered, s.h1);
  if (c.layers[size_t(l)].mixer == MixerKind::GatedDeltaNet) {
    gdn_mixer_fwd(cx, w, l, s);
  } else {
    attention_mixer_fwd(cx, w, l, s);
  }
  add_inplace(s.xm, s.x);

  // FFN input.
  s.h2 = f32({T, H});
  rmsnorm_fwd(s.xm, w.ffn_norm, eps, c.norm_zero_centered, s.h2);
}

// x (T, H) -> out (T, H) = down(silu(gate x) * up x), keeping g, u, a when `keep`.
void swiglu_ffn_fwd(const Tensor& x, const Tensor& wg, const Tensor& wu, const Tensor& wd, const LoraCtx& lg,
                    const LoraCtx& lu, const LoraCtx& ld, const Tensor& out, Tensor* g_out, Tensor* u_out,
                    Tensor* a_out, LinearActs* lin) {
  const int64_t T = x.size(0), I = wg.size(0);
  Tensor g = f32({T, I}), u = f32({T, I}), a = f32({T, I});
  lora_linear_fwd(x, wg, Tensor(), lg, g, lin ? &lin[0] : nullptr);
  lora_linear_fwd(x, wu, Tensor(), lu, u, lin ? &lin[1] : nullptr);
  swiglu_fwd(g, u, a);
  lora_linear_fwd(a, wd, Tensor(), ld, out, lin ? &lin[2] : nullptr);
  if (g_out) {
    *g_out = g;
    *u_out = u;
    *a_out = a;
  }
}

// dout (T, H) -> dx (T, H) accumulated; LoRA gradients added.
void swiglu_ffn_bwd(const Tensor& x, const Tensor& wg, const Tensor& wu, const Tensor& wd, const LoraCtx& lg,
                    const LoraCtx& lu, const LoraCtx& ld, const Tensor& g, const Tensor& u, const Tensor& a,
                    const LinearActs* lin, const Tensor& dout, const Tensor& dx) {
  static const LinearActs kNone;
  const int64_t T = x.size(0), I = wg.size(0);
  Tensor da = f32({T, I}), dg = f32({T, I}), du = f32({T, I});
  lora_linear_bwd(a, wd, ld, lin ? lin[2] : kNone, dout, da, false);
  swiglu_bwd(g, u, da, dg, du);
  lora_linear_bwd(x, wg, lg, lin ? lin[0] : kNone, dg, dx, true);
  lora_linear_bwd(x, wu, lu, lin ? lin[1] : kNone, du, dx, true);
}

// MoE: out = sum_j w_j expert_{e_j}(x) (+ sigmoid-gated shared expert).
void moe_fwd(const Ctx& cx, const LayerWeights& w, int64_t l, const Tensor& x, LayerActs& s, const Tensor& out) {
  const ModelConfig& c = cx.c;
  const int64_t T = x.size(0), H = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  s.route_logits = f32({T, E});
  observe_linear(x, w.ffn_gate_inp);
  linear_fwd(x, w.ffn_gate_inp, nullptr, s.route_logits);
  s.experts = Tensor::empty(DType::I32, {T, k});
  s.weights = f32({T, k});
  moe_route_fwd(s.route_logits, c.norm_topk_prob, s.experts, s.weights);
  std::memset(out.data(), 0, out.nbytes());
  const LoraCtx none;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t> rows = expert_rows(s.experts, e);
    if (rows.empty()) continue;
    Tensor xe = gather_rows(x, rows, k), ye = f32({int64_t(rows.size()), H});
    ExpertLora el;
    expert_lora(cx, l, e, el);
    swiglu_ffn_fwd(xe, expert_slice(w.ffn_gate_exps, e), expert_slice(w.ffn_up_exps, e),
                   expert_slice(w.ffn_down_exps, e), el.cg, el.cu, el.cd, ye, nullptr, nullptr, nullptr, nullptr);
    for (size_t r = 0; r < rows.size(); ++r) {
      const float wt = s.weights.f32()[rows[r]];
      float* o = out.f32() + (rows[r] / k) * H;
      for (int64_t j = 0; j < H; ++j) o[j] += wt * ye.f32()[int64_t(r) * H + j];
    }
  }
  if (w.ffn_gate_shexp.defined()) {
    Tensor shared = f32({T, H}), gate = f32({T, 1});
    swiglu_ffn_fwd(x, w.ffn_gate_shexp, w.ffn_up_shexp, w.ffn_down_shexp,
                   cx.lora_ctx(l, LoraTarget::SharedGate), cx.lora_ctx(l, LoraTarget::SharedUp),
                   cx.lora_ctx(l, LoraTarget::SharedDown), shared, &s.sh_g, &s.sh_u, &s.sh_a,
                   &s.lin[size_t(LoraTarget::SharedGate)]);
    observe_linear(x, w.ffn_gate_inp_shexp);
    linear_fwd(x, w.ffn_gate_inp_shexp, nullptr, gate);
    s.sh_out = shared;
    s.sh_gate = gate;
    for (int64_t t = 0; t < T; ++t) {
      const float sg = 1.0f / (1.0f + std::exp(-gate.f32()[t]));
      for (int64_t j = 0; j < H; ++j) out.f32()[t * H + j] += sg * shared.f32()[t * H + j];
    }
  }
}

// dout (T, H) -> dx (T, H) accumulated: through the experts (recomputed per expert) and through the routing weights.
void moe_bwd(const Ctx& cx, const LayerWeights& w, int64_t l, const Tensor& x, const LayerActs& s,
             const Tensor& dout, const Tensor& dx) {
  const ModelConfig& c = cx.c;
  const int64_t T = x.size(0), H = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  if (w.ffn_gate_shexp.defined()) {
    // out += sigmoid(x . w_g) * shared(x)
    Tensor dsh = f32({T, H}), dgl = f32({T, 1});
    for (int64_t t = 0; t < T; ++t) {
      const double sg = sigmoid(double(s.sh_gate.f32()[t]));
      double dot = 0;
      for (int64_t j = 0; j < H; ++j) {
        dsh.f32()[t * H + j] = float(sg * dout.f32()[t * H + j]);
        dot += double(dout.f32()[t * H + j]) * s.sh_out.f32()[t * H + j];
      }
      dgl.f32()[t] = float(dot * sg * (1.0 - sg));
    }
    swiglu_ffn_bwd(x, w.ffn_gate_shexp, w.ffn_up_shexp, w.ffn_down_shexp,
                   cx.lora_ctx(l, LoraTarget::SharedGate), cx.lora_ctx(l, LoraTarget::SharedUp),
                   cx.lora_ctx(l, LoraTarget::SharedDown), s.sh_g, s.sh_u, s.sh_a,
                   &s.lin[size_t(LoraTarget::SharedGate)], dsh, dx);
    linear_bwd(x, w.ffn_gate_inp_shexp, dgl, &dx.view(), true, nullptr, nullptr);
  }
  Tensor dweights = f32({T, k});
  const LoraCtx none;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t> rows = expert_rows(s.experts, e);
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    const Tensor wg = expert_slice(w.ffn_gate_exps, e), wu = expert_slice(w.ffn_up_exps, e),
                 wd = expert_slice(w.ffn_down_exps, e);
    Tensor xe = gather_rows(x, rows, k), ye = f32({n, H}), g, u, a;
    ExpertLora el;
    expert_lora(cx, l, e, el);
    LinearActs lin[3];
    swiglu_ffn_fwd(xe, wg, wu, wd, el.cg, el.cu, el.cd, ye, &g, &u, &a, lin);
    // d(out_t)/d(y_e) = w_j; d(out_t)/d(w_j) = y_e . dout_t
    Tensor dye = f32({n, H}), dxe = Tensor::zeros(DType::F32, {n, H});
    for (int64_t r = 0; r < n; ++r) {
      const float* d = dout.f32() + (rows[size_t(r)] / k) * H;
      const float wt = s.weights.f32()[rows[size_t(r)]];
      double dot = 0;
      for (int64_t j = 0; j < H; ++j) {
        dye.f32()[r * H + j] = wt * d[j];
        dot += double(d[j]) * ye.f32()[r * H + j];
      }
      dweights.f32()[rows[size_t(r)]] = float(dot);
    }
    swiglu_ffn_bwd(xe, wg, wu, wd, el.cg, el.cu, el.cd, g, u, a, lin, dye, dxe);
    for (int64_t r = 0; r < n; ++r) {
      float* d = dx.f32() + (rows[size_t(r)] / k) * H;
      for (int64_t j = 0; j < H; ++j) d[j] += dxe.f32()[r * H + j];
    }
  }
  Tensor dlogits = f32({T, E});
  moe_route_bwd(s.route_logits, c.norm_topk_prob, s.experts, dweights, dlogits);
  linear_bwd(x, w.ffn_gate_inp, dlogits, &dx.view(), true, nullptr, nullptr);
}

// Runs layer l from s.x; returns its output (T, H).
Tensor layer_forward(const Ctx& cx, const LayerWeights& w, int64_t l, LayerActs& s) {
  const ModelConfig& c = cx.c;
  layer_fwd(cx, w, l, s);
  Tensor y = f32(s.x.shape());
  if (c.layers[size_t(l)].ffn == FfnKind::Dense) {
    swiglu_ffn_fwd(s.h2, w.ffn_gate, w.ffn_up, w.ffn_down, cx.lora_ctx(l, LoraTarget::Gate),
                   cx.lora_ctx(l, LoraTarget::Up), cx.lora_ctx(l, LoraTarget::Down), y, &s.g, &s.u, &s.a, &s.lin[4]);
  } else {
    moe_fwd(cx, w, l, s.h2, s, y);
  }
  add_inplace(y, s.xm);
  return y;
}

// dy (T, H) = gradient of the layer output -> gradient of the layer input (T, H).
Tensor layer_backward(const Ctx& cx, const LayerWeights& w, int64_t l, const LayerActs& s, const Tensor& dy) {
  const ModelConfig& c = cx.c;
  const MixerKind kind = c.layers[size_t(l)].mixer;
  const int64_t T = s.x.size(0), H = c.hidden_size, nH = c.num_heads, nKV = c.num_kv_heads, hd = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  // FFN branch: xm receives dy directly (residual) and through norm2.
  Tensor dh2 = Tensor::zeros(DType::F32, {T, H});
  if (c.layers[size_t(l)].ffn == FfnKind::Dense) {
    swiglu_ffn_bwd(s.h2, w.ffn_gate, w.ffn_up, w.ffn_down, cx.lora_ctx(l, LoraTarget::Gate),
                   cx.lora_ctx(l, LoraTarget::Up), cx.lora_ctx(l, LoraTarget::Down), s.g, s.u, s.a, &s.lin[4], dy,
                   dh2);
  } else {
    moe_bwd(cx, w, l, s.h2, s, dy, dh2);
  }
  Tensor dxm = f32({T, H});
  rmsnorm_bwd(s.xm, w.ffn_norm, dh2, eps, c.norm_zero_centered, dxm, nullptr);
  add_inplace(dxm, dy);

  Tensor dh1 = f32({T, H});
  if (kind == MixerKind::GatedDeltaNet) {
    gdn_mixer_bwd(cx, w, l, s, dxm, dh1);
    Tensor dx = f32({T, H});
    rmsnorm_bwd(s.x, w.attn_norm, dh1, eps, c.norm_zero_centered, dx, nullptr);
    add_inplace(dx, dxm);
    return dx;
  }
  // Attention branch.
  const bool gated = kind == MixerKind::GatedAttention;
  Tensor d_o = f32({T, nH * hd});
  lora_linear_bwd(s.o, w.attn_output, cx.lora_ctx(l, LoraTarget::O), s.lin[3], dxm, d_o, false);
  Tensor dgate;
  if (gated) {  // o = o_attn * sigmoid(gate)
    dgate = f32({T, nH * hd});
    for (int64_t i = 0; i < d_o.numel(); ++i) {
      const double sg = sigmoid(double(s.gate.f32()[i])), g = d_o.f32()[i];
      dgate.f32()[i] = float(g * double(s.o_attn.f32()[i]) * sg * (1.0 - sg));
      d_o.f32()[i] = float(g * sg);
    }
  }
  Tensor dq = f32({T, nH, hd}), dk = f32({T, nKV, hd}), dv = f32({T, nKV, hd});
  attention_bwd(s.qr, s.kr, s.v.reshape({T, nKV, hd}), opt(cx.doc_start), float(1.0 / std::sqrt(double(hd))),
                d_o.reshape({T, nH, hd}), dq, dk, dv);
  rope_bwd(dq, cx.pos, c.rotary_dim, c.rope_theta);
  rope_bwd(dk, cx.pos, c.rotary_dim, c.rope_theta);
  dq = dq.reshape({T, nH * hd});
  dk = dk.reshape({T, nKV * hd});
  if (c.qk_norm) {
    rmsnorm_bwd(s.q, w.attn_q_norm, dq, eps, c.norm_zero_centered, dq, nullptr);
    rmsnorm_bwd(s.k, w.attn_k_norm, dk, eps, c.norm_zero_centered, dk, nullptr);
  }
  if (gated) {  // q_proj rows interleave [query_h | gate_h] per head
    Tensor dqg = f32({T, c.q_dim(kind)});
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nH; ++h) {
        float* dst = dqg.f32() + (t * nH + h) * 2 * hd;
        std::memcpy(dst, dq.f32() + (t * nH + h) * hd, size_t(hd) * 4);
        std::memcpy(dst + hd, dgate.f32() + (t * nH + h) * hd, size_t(hd) * 4);
      }
    dq = dqg;
  }
  lora_linear_bwd(s.h1, w.attn_q, cx.lora_ctx(l, LoraTarget::Q), s.lin[0], dq, dh1, false);
  lora_linear_bwd(s.h1, w.attn_k, cx.lora_ctx(l, LoraTarget::K), s.lin[1], dk, dh1, true);
  lora_linear_bwd(s.h1, w.attn_v, cx.lora_ctx(l, LoraTarget::V), s.lin[2], dv.reshape({T, nKV * hd}), dh1, true);
  Tensor dx = f32({T, H});
  rmsnorm_bwd(s.x, w.attn_norm, dh1, eps, c.norm_zero_centered, dx, nullptr);
  add_inplace(dx, dxm);
  return dx;
}

// The forward pass needs an f32 CPU embedding table; the linear weights may also be kept quantized or in
// f16/bf16 (model_load_gguf with keep_quantized), which linear_fwd computes as ggml does.
void check_cpu_f32(const Model& model) {
  if (model.weights.token_embd.device() != Device::CPU || model.weights.token_embd.dtype() != DType::F32) {
    throw UnsupportedError("the reference forward pass runs on f32 CPU weights", "load the model with --device cpu");
  }
}

// Training (loss and gradients) needs every weight in f32: there is no backward through quantized weights.
void check_cpu_f32_train(const Model& model) {
  check_cpu_f32(model);
  for (const TensorSpec& s : model_tensor_specs(model.config)) {
    const Tensor& t = weights_field(model.weights, s);
    if (t.defined() && t.dtype() != DType::F32)
      throw UnsupportedError("training needs f32 weights, but " + s.name + " is kept as " + dtype_name(t.dtype()),
                             "load the GGUF dequantized (the default) to train on it");
  }
}

Tensor i32_tensor(std::span<const int32_t> v) {
  Tensor t = Tensor::empty(DType::I32, {int64_t(v.size())});
  std::memcpy(t.data(), v.data(), v.size() * 4);
  return t;
}

}  // namespace

LinearObserverScope::LinearObserverScope(LinearObserver observer)
    : observer_(std::move(observer)), previous_(t_linear_observer) {
  t_linear_observer = &observer_;
}

LinearObserverScope::~LinearObserverScope() { t_linear_observer = previous_; }

Tensor model_logits(const Model& model, std::span<const int32_t> ids, const LoraAdapter* lora) {
  check_cpu_f32(model);
  const ModelConfig& c = model.config;
  const int64_t T = int64_t(ids.size());
  if (T == 0) throw ConfigError("no token ids given", "pass at least one id");
  Tensor id = i32_tensor(ids), pos = Tensor::empty(DType::I32, {T});
  for (int64_t t = 0; t < T; ++t) pos.ptr<int32_t>()[t] = int32_t(t);
  const Ctx cx{c, lora, nullptr, pos, nullptr};
  Tensor x = f32({T, c.hidden_size});
  embedding_fwd(id, model.weights.token_embd, x);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerActs s;
    s.x = x;
    x = layer_forward(cx, model.weights.layers[size_t(l)], l, s);
  }
  Tensor h = f32({T, c.hidden_size}), logits = f32({T, c.vocab_size});
  rmsnorm_fwd(x, model.weights.output_norm, float(c.rms_norm_eps), c.norm_zero_centered, h);
  observe_linear(h, model.weights.output);
  linear_fwd(h, model.weights.output, nullptr, logits);
  return logits;
}

RowLoss model_loss_row(const Model& model, LoraAdapter* lora, const TokenRow& row, std::span<const int32_t> targets,
                       float grad_scale, Rng* dropout_rng) {
  check_cpu_f32_train(model);
  const ModelConfig& c = model.config;
  const int64_t T = int64_t(row.ids.size()), H = c.hidden_size, V = c.vocab_size;
  TUNE_CHECK(int64_t(targets.size()) == T) << "targets must match ids";
  Tensor id = i32_tensor(row.ids), pos;
  if (row.pos.empty()) {
    pos = Tensor::empty(DType::I32, {T});
    for (int64_t t = 0; t < T; ++t) pos.ptr<int32_t>()[t] = int32_t(t);
  } else {
    pos = i32_tensor(row.pos);
  }
  Tensor docs = row.doc_start.empty() ? Tensor() : i32_tensor(row.doc_start);
  const Ctx cx{c, lora, dropout_rng, pos, row.doc_start.empty() ? nullptr : &docs};

  std::vector<LayerActs> acts(size_t(c.num_layers));
  Tensor x = f32({T, H});
  embedding_fwd(id, model.weights.token_embd, x);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    acts[size_t(l)].x = x;
    x = layer_forward(cx, model.weights.layers[size_t(l)], l, acts[size_t(l)]);
  }

  // The head runs only on positions with a target.
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < T; ++t)
    if (targets[size_t(t)] != kIgnoreIndex) rows.push_back(t);
  RowLoss out;
  out.trained = int64_t(rows.size());
  if (rows.empty()) return out;
  const int64_t n = out.trained;
  Tensor xs = f32({n, H}), hs = f32({n, H}), logits = f32({n, V}), tg = Tensor::empty(DType::I32, {n});
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(xs.f32() + i * H, x.f32() + rows[size_t(i)] * H, size_t(H) * 4);
    tg.ptr<int32_t>()[i] = targets[size_t(rows[size_t(i)])];
  }
  rmsnorm_fwd(xs, model.weights.output_norm, float(c.rms_norm_eps), c.norm_zero_centered, hs);
  linear_fwd(hs, model.weights.output, nullptr, logits);
  Tensor losses = f32({n});
  cross_entropy_fwd(logits, tg, losses);
  for (int64_t i = 0; i < n; ++i) out.loss_sum += losses.f32()[i];
  if (grad_scale == 0.0f || !lora) return out;

  // Backward: head, final norm, scatter to the trained rows, then the layers in reverse.
  Tensor dlogits = f32({n, V}), dhs = f32({n, H}), dxs = f32({n, H});
  cross_entropy_bwd(logits, tg, grad_scale, dlogits);
  linear_bwd(hs, model.weights.output, dlogits, &dhs.view(), false, nullptr, nullptr);
  rmsnorm_bwd(xs, model.weights.output_norm, dhs, float(c.rms_norm_eps), c.norm_zero_centered, dxs, nullptr);
  Tensor dx = Tensor::zeros(DType::F32, {T, H});
  for (int64_t i = 0; i < n; ++i) std::memcpy(dx.f32() + rows[size_t(i)] * H, dxs.f32() + i * H, size_t(H) * 4);
  for (int64_t l = c.num_layers - 1; l >= 0; --l)
    dx = layer_backward(cx, model.weights.layers[size_t(l)], l, acts[size_t(l)], dx);
  return out;
}

}  // namespace tune
