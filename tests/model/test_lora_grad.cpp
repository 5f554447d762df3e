// LoRA through whole models: analytic gradients of A and B against central differences of the fp32 loss, and a
// packed row of several documents gives exactly the losses of the documents run one by one.
#include <cmath>

#include "model/forward.h"
#include "model/lora.h"
#include "test_util.h"

namespace tune {

namespace {

ModelConfig tiny(const std::string& type) {
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
  lc.targets = lora_targets_parse("all");  // the seven projections and, on MoE layers, the experts
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
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe"}) {
    Model m = model_random(tiny(type), 3, 0.3f);
    LoraAdapter a = random_adapter(m.config, 4);
    const Row row = packed_row();
    a.zero_grad();
    model_loss_row(m, &a, row.view(), row.targets, 1.0f, nullptr);
    auto loss = [&] { return model_loss_row(m, &a, row.view(), row.targets, 0.0f, nullptr).loss_sum; };
    int checked = 0;
    for (auto& layer : a.layers) {
      for (LoraWeights& w : layer) {
        if (!w.defined()) continue;
        for (auto [p, g] : {std::pair<Tensor*, Tensor*>{&w.A, &w.dA}, {&w.B, &w.dB}}) {
          for (int64_t i = 0; i < p->numel(); i += 5) {  // a spread of entries of every LoRA tensor
            float* x = p->f32() + i;
            const float x0 = *x, h = 1e-2f;
            *x = x0 + h;
            const double lp = loss();
            *x = x0 - h;
            const double lm = loss();
            *x = x0;
            const double num = (lp - lm) / (2 * h), ana = g->f32()[i];
            // fp32 forward: the loss carries ~1e-6 relative noise, so the difference quotient ~1e-4 absolute.
            ASSERT_LE(std::fabs(ana - num), 2e-3 + 2e-2 * std::fabs(num)) << type << " entry " << i;
            ++checked;
          }
        }
      }
    }
    EXPECT_GT(checked, 50) << type;
  }
}

TEST(LoraGrad, PackedRowEqualsSeparateDocuments) {
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe"}) {
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

}  // namespace tune
