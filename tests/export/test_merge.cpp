// LoRA merge: the merged checkpoint (f32) gives the logits of base + adapter; other tensors pass through untouched;
// PEFT adapter files round-trip and bad adapters are clear errors.
#include <cmath>
#include <filesystem>

#include "export/merge.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/lora_peft.h"
#include "test_util.h"

namespace tune {

namespace {

Model saved_model(const std::string& dir, const std::string& type) {
  Json j = Json::parse(R"({"vocab_size":40,"hidden_size":16,"num_hidden_layers":2,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":8,"intermediate_size":24,"tie_word_embeddings":false,
    "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":12,"norm_topk_prob":true,"mlp_only_layers":[0]})");
  j["model_type"] = type;
  model_save_hf(model_random(model_config_from_json(j, "test"), 1, 0.3f), dir, DType::F32);
  return model_load(dir);
}

LoraAdapter random_adapter(const Model& m, bool rslora) {
  LoraConfig lc;
  lc.rank = 3;
  lc.alpha = 5;
  lc.rslora = rslora;
  lc.targets = lora_targets_parse("all");
  LoraAdapter a = LoraAdapter::init(m.config, lc, 2);
  Rng rng(3);
  for (auto& layer : a.layers)
    for (LoraWeights& w : layer)
      if (w.defined())
        for (int64_t i = 0; i < w.B.numel(); ++i) w.B.f32()[i] = 0.2f * rng.normal();
  return a;
}

double rel_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    num += std::pow(double(a.f32()[i]) - b.f32()[i], 2);
    den += std::pow(double(b.f32()[i]), 2);
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST(Merge, MergedLogitsEqualBasePlusAdapter) {
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe"}) {
    for (bool rslora : {false, true}) {
      test::TempDir dir;
      const Model m = saved_model(dir / "base", type);
      const LoraAdapter a = random_adapter(m, rslora);
      lora_save_peft(a, m, dir / "adapter", "base");
      const LoraAdapter loaded = lora_load_peft(dir / "adapter", m);
      EXPECT_EQ(loaded.config.rslora, rslora);
      merge_lora_to_hf(dir / "base", m, loaded, dir / "merged", DType::F32);
      const Model merged = model_load(dir / "merged");
      const std::vector<int32_t> ids = {1, 7, 30, 2, 19, 4};
      const Tensor want = model_logits(m, ids, &a);
      EXPECT_LE(rel_l2(model_logits(merged, ids), want), 1e-5) << type;
      EXPECT_GT(rel_l2(model_logits(m, ids), want), 1e-3) << type << ": the adapter should change the logits";
    }
  }
}

TEST(Merge, FusedExpertCheckpoint) {
  // transformers 5's fused expert layout (gate_up_proj [E, 2I, H], down_proj [E, H, I]), from the goldens.
  const std::string base = std::string(TUNE_TEST_DATA_DIR) + "/golden/qwen3moe_e6_top3_nonorm_mixed_untied_fused";
  const Model m = model_load(base);
  ASSERT_EQ(m.report.experts_layout, "fused");
  const LoraAdapter a = random_adapter(m, false);
  test::TempDir dir;
  merge_lora_to_hf(base, m, a, dir / "merged", DType::F32);
  const Model merged = model_load(dir / "merged");
  EXPECT_EQ(merged.report.experts_layout, "fused");
  const std::vector<int32_t> ids = {1, 7, 30, 2, 19, 4};
  EXPECT_LE(rel_l2(model_logits(merged, ids), model_logits(m, ids, &a)), 1e-5);
}

TEST(Merge, Qwen35LinearAttentionAndSharedExpert) {
  // LoRA on every Qwen3.5 target (gated attention, linear_attn in_proj_qkv/z/a/b and out_proj, the shared
  // expert, the fused experts) of the composite checkpoints (keys under model.language_model.), through the
  // PEFT files.
  for (const char* name : {"qwen3_5_dense_nv4nk2_T75_untied", "qwen3_5moe_e4_top2_nv2nk1_T67"}) {
    const std::string base = std::string(TUNE_TEST_DATA_DIR) + "/golden/" + name;
    const Model m = model_load(base);
    const LoraAdapter a = random_adapter(m, false);
    test::TempDir dir;
    lora_save_peft(a, m, dir / "adapter", "base");
    const LoraAdapter loaded = lora_load_peft(dir / "adapter", m);
    EXPECT_EQ(loaded.num_parameters(), a.num_parameters()) << name;
    merge_lora_to_hf(base, m, loaded, dir / "merged", DType::F32);
    const Model merged = model_load(dir / "merged");
    const std::vector<int32_t> ids = {1, 7, 30, 2, 19, 4, 11, 3};
    const Tensor want = model_logits(m, ids, &a);
    EXPECT_LE(rel_l2(model_logits(merged, ids), want), 1e-5) << name;
    EXPECT_GT(rel_l2(model_logits(m, ids), want), 1e-3) << name << ": the adapter should change the logits";
  }
}

TEST(Merge, BadAdapters) {
  test::TempDir dir;
  const Model m = saved_model(dir / "base", "qwen3");
  const LoraAdapter a = random_adapter(m, false);
  lora_save_peft(a, m, dir / "adapter", "base");
  EXPECT_THROW(lora_load_peft(dir / "nowhere", m), IoError);

  Json cfg = json_load_file(dir / "adapter/adapter_config.json");
  cfg["r"] = 4;  // rank that does not match the tensors
  json_save_file(dir / "adapter/adapter_config.json", cfg);
  try {
    lora_load_peft(dir / "adapter", m);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lora_A.weight' has shape [3, 16], expected [4, 16]"), std::string::npos)
        << e.what();
  }
  cfg["r"] = 3;
  cfg.erase("lora_alpha");
  json_save_file(dir / "adapter/adapter_config.json", cfg);
  EXPECT_THROW(lora_load_peft(dir / "adapter", m), ConfigError);
  cfg["lora_alpha"] = 5;
  cfg["target_modules"] = {"q_proj", "lm_head"};
  json_save_file(dir / "adapter/adapter_config.json", cfg);
  EXPECT_THROW(lora_load_peft(dir / "adapter", m), UnsupportedError);
  cfg["target_modules"] = {"q_proj"};  // tensors for k..down are then foreign
  json_save_file(dir / "adapter/adapter_config.json", cfg);
  EXPECT_THROW(lora_load_peft(dir / "adapter", m), FormatError);
}

}  // namespace tune
