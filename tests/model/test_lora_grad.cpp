// LoRA through whole models: analytic gradients of A and B against central differences of the fp32 loss, and a
// packed row of several documents gives exactly the losses of the documents run one by one.
#include <cmath>

#include "model/forward.h"
#include "model/lora.h"
#include "test_util.h"

namespace tune {

namespace {

// Qwen3.5: Gated DeltaNet layers around a gated-attention layer, nV > nK (two value heads per key head),
// partial RoPE; the MoE variant has a sigmoid-gated shared expert on every layer.
ModelConfig tiny_qwen35(const std::string& type) {
  Json t = Json::parse(R"({"vocab_size":40,"hidden_size":16,"num_hidden_layers":3,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":8,"intermediate_size":24,"tie_word_embeddings":false,"rms_norm_eps":1e-6,
    "layer_types":["linear_attention","full_attention","linear_attention"],"linear_num_key_heads":2,
    "linear_num_value_heads":4,"linear_key_head_dim":4,"linear_value_head_dim":3,"linear_conv_kernel_dim":3,
    "partial_rotary_factor":0.5,"rope_parameters":{"rope_theta":10000.0,"partial_rotary_factor":0.5,
    "mrope_section":[1,1,0],"rope_type":"default"},
    "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":12,"shared_expert_intermediate_size":10})");
  Json j = Json::object();
  j["model_type"] = type;
  t["model_type"] = type + "_text";
  j["text_config"] = t;
  return model_config_from_json(j, "test");
}

ModelConfig tiny(const std::string& type) {
  if (type.rfind("qwen3_5", 0) == 0) return tiny_qwen35(type);
  Json j = Json::parse(R"({"vocab_size":40,"hidden_size":16,"num_hidden_layers":2,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":8,"intermediate_size":24,"tie_word_embeddings":false,
    "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":12,"norm_topk_prob":true,"mlp_only_layers":[1]})");
  j["model_type"] = type;
  return model_config_from_json(j, "test");
}

LoraAdapter random_adapter(const ModelConfig& c, uint64_t seed) {
  LoraConfig lc;
  lc.rank = 3;
  lc.alpha = 6;
  lc.targets = lora_targets_parse("all");  // every projection and, on MoE layers, the experts
  LoraAdapter a = LoraAdapter::init(c, lc, seed);
  Rng rng(seed + 1);
  for (auto& layer : a.layers)
    for (LoraWeights& w : layer)
      if (w.defined())
        for (int64_t i = 0; i < w.B.numel(); ++i) w.B.f32()[i] = 0.3f * rng.normal();
  return a;
}

struct Row {
  std::vector<int32_t> ids, targets, pos, docs;
  TokenRow view() const { return {ids, pos, docs}; }
};

// Two documents [0, 5) and [5, 9), each with next-token targets inside the document only.
Row packed_row() {
  Row r;
  r.ids = {3, 17, 5, 29, 8, 11, 2, 38, 21};
  r.pos = {0, 1, 2, 3, 4, 0, 1, 2, 3};
  r.docs = {0, 0, 0, 0, 0, 5, 5, 5, 5};
  r.targets = {17, 5, 29, 8, -100, 2, 38, 21, -100};
  r.targets[0] = -100;  // an untrained prompt token
  return r;
}

}  // namespace

TEST(LoraGrad, MatchesFiniteDifferences) {
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe"}) {
    Model m = model_random(tiny(type), 3, 0.3f);
    LoraAdapter a = random_adapter(m.config, 4);
    const Row row = packed_row();
    a.zero_grad();
    model_loss_row(m, &a, row.view(), row.targets, 1.0f, nullptr);
    auto loss = [&] { return model_loss_row(m, &a, row.view(), row.targets, 0.0f, nullptr).loss_sum; };
    int checked = 0;
    std::array<int, kLoraTargets> per_target{};
    const bool qwen35 = m.config.has_mixer(MixerKind::GatedDeltaNet);
    for (auto& layer : a.layers) {
      for (size_t t = 0; t < layer.size(); ++t) {
        LoraWeights& w = layer[t];
        if (!w.defined()) continue;
        ++per_target[t];
        for (auto [p, g] : {std::pair<Tensor*, Tensor*>{&w.A, &w.dA}, {&w.B, &w.dB}}) {
          for (int64_t i = 0; i < p->numel(); i += 5) {  // a spread of entries of every LoRA tensor
            float* x = p->f32() + i;
            const float x0 = *x;
            auto at = [&](float d) {
              *x = x0 + d;
              return loss();
            };
            // Fourth-order central differences. fp32 rounding of the loss favours a large step, curvature a
            // small one; the Qwen3.5 models (L2-normalized q/k in the Gated DeltaNet) are curved enough to
            // need the small one for some entries, so those try h = 1e-2, then 1e-3, and take the closer.
            auto numeric = [&](float h) {
              return (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * double(h));
            };
            const double ana = g->f32()[i];
            double num = numeric(1e-2f);
            if (qwen35 && std::fabs(ana - num) > 2e-3 + 2e-2 * std::fabs(num)) {
              const double num2 = numeric(1e-3f);
              if (std::fabs(ana - num2) < std::fabs(ana - num)) num = num2;
            }
            *x = x0;
            // fp32 forward: the loss carries ~1e-6 relative noise, so the difference quotient ~1e-4 absolute.
            ASSERT_LE(std::fabs(ana - num), 2e-3 + 2e-2 * std::fabs(num))
                << type << " " << lora_target_short(LoraTarget(t)) << (p == &w.A ? " A" : " B") << " entry "
                << i << " analytic " << ana << " numeric " << num;
            ++checked;
          }
        }
      }
    }
    EXPECT_GT(checked, 50) << type;
    if (m.config.has_mixer(MixerKind::GatedDeltaNet)) {  // every Qwen3.5 target was checked
      for (LoraTarget t : {LoraTarget::Q, LoraTarget::K, LoraTarget::V, LoraTarget::O, LoraTarget::LinQkv,
                           LoraTarget::LinZ, LoraTarget::LinOut, LoraTarget::LinA, LoraTarget::LinB})
        EXPECT_GT(per_target[size_t(t)], 0) << type << " " << lora_target_short(t);
      if (m.config.has_moe()) {
        for (LoraTarget t : {LoraTarget::ExpertsGateUp, LoraTarget::ExpertsDown, LoraTarget::SharedGate,
                             LoraTarget::SharedUp, LoraTarget::SharedDown})
          EXPECT_GT(per_target[size_t(t)], 0) << type << " " << lora_target_short(t);
      }
    }
  }
}

TEST(LoraGrad, PackedRowEqualsSeparateDocuments) {
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe"}) {
    Model m = model_random(tiny(type), 5, 0.3f);
    LoraAdapter a = random_adapter(m.config, 6);
    const Row row = packed_row();
    const RowLoss packed = model_loss_row(m, &a, row.view(), row.targets, 0.0f, nullptr);
    double sum = 0;
    int64_t trained = 0;
    for (auto [b, e] : {std::pair<size_t, size_t>{0, 5}, {5, 9}}) {
      const std::vector<int32_t> ids(row.ids.begin() + b, row.ids.begin() + e);
      const std::vector<int32_t> tg(row.targets.begin() + b, row.targets.begin() + e);
      const RowLoss one = model_loss_row(m, &a, TokenRow{ids, {}, {}}, tg, 0.0f, nullptr);
      sum += one.loss_sum;
      trained += one.trained;
    }
    EXPECT_EQ(packed.trained, trained);
    EXPECT_NEAR(packed.loss_sum, sum, 1e-5 * std::fabs(sum)) << type;
  }
}

TEST(LoraTargets, Qwen35NamesAndShapes) {
  const auto on = lora_targets_parse("qkv,z,out_proj,in_proj_a,b");
  for (LoraTarget t :
       {LoraTarget::LinQkv, LoraTarget::LinZ, LoraTarget::LinOut, LoraTarget::LinA, LoraTarget::LinB})
    EXPECT_TRUE(on[size_t(t)]) << lora_target_short(t);
  EXPECT_FALSE(on[size_t(LoraTarget::Q)]);
  // A module name selects every target of that name, as PEFT's suffix match does: gate_proj is also the
  // shared expert's; "shared" selects the shared expert alone.
  const auto gp = lora_targets_parse("gate_proj");
  EXPECT_TRUE(gp[size_t(LoraTarget::Gate)] && gp[size_t(LoraTarget::SharedGate)]);
  const auto sh = lora_targets_parse("shared");
  EXPECT_TRUE(sh[size_t(LoraTarget::SharedGate)] && sh[size_t(LoraTarget::SharedUp)] &&
              sh[size_t(LoraTarget::SharedDown)]);
  EXPECT_FALSE(sh[size_t(LoraTarget::Gate)]);
  const auto all = lora_targets_parse("all");
  for (int t = 0; t < kLoraTargets; ++t) EXPECT_TRUE(all[size_t(t)]) << t;
  EXPECT_THROW(lora_targets_parse("in_proj_x"), ConfigError);

  const ModelConfig c = tiny("qwen3_5_moe");  // layers: GDN, gated attention, GDN; nK 2, nV 4, dk 4, dv 3
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(LoraAdapter::target_shape(c, 0, LoraTarget::LinQkv), P(16, 2 * 8 + 12));
  EXPECT_EQ(LoraAdapter::target_shape(c, 0, LoraTarget::LinZ), P(16, 12));
  EXPECT_EQ(LoraAdapter::target_shape(c, 0, LoraTarget::LinOut), P(12, 16));
  EXPECT_EQ(LoraAdapter::target_shape(c, 0, LoraTarget::LinA), P(16, 4));
  EXPECT_EQ(LoraAdapter::target_shape(c, 0, LoraTarget::Q), P(0, 0));
  EXPECT_EQ(LoraAdapter::target_shape(c, 1, LoraTarget::LinQkv), P(0, 0));
  EXPECT_EQ(LoraAdapter::target_shape(c, 1, LoraTarget::Q), P(16, 2 * 4 * 8));  // query + gate per head
  EXPECT_EQ(LoraAdapter::target_shape(c, 1, LoraTarget::SharedGate), P(16, 10));
  EXPECT_EQ(LoraAdapter::target_shape(c, 1, LoraTarget::SharedDown), P(10, 16));
  EXPECT_EQ(LoraAdapter::target_shape(tiny("qwen3_moe"), 0, LoraTarget::SharedGate), P(0, 0));
}

}  // namespace tune
