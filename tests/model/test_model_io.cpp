// Saving and loading models in Hugging Face layout: exact round trips (single, sharded, MoE per-expert and fused
// layouts), and clear errors for checkpoints that do not match their config.
#include <cstring>
#include <filesystem>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/names.h"
#include "test_util.h"

namespace tune {

namespace {

ModelConfig tiny(const std::string& type) {
  Json j = Json::parse(R"({"vocab_size":50,"hidden_size":16,"num_hidden_layers":2,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":8,"intermediate_size":24,"tie_word_embeddings":false,
    "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":12,"norm_topk_prob":true})");
  j["model_type"] = type;
  return model_config_from_json(j, "test");
}

void expect_same_weights(const Model& a, const Model& b) {
  for (const TensorSpec& s : model_tensor_specs(a.config)) {
    const Tensor& x = weights_field(a.weights, s);
    const Tensor& y = weights_field(b.weights, s);
    ASSERT_EQ(x.shape(), y.shape()) << s.name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0) << s.name;
  }
}

template <class E>
void expect_load_error(const std::string& dir, const std::string& needle) {
  try {
    model_load(dir);
    FAIL() << "expected an error mentioning " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ModelIo, RoundTripEveryArch) {
  for (const char* type : {"qwen2", "qwen3", "qwen3_moe"}) {
    test::TempDir dir;
    const Model m = model_random(tiny(type), 7, 0.1f);
    model_save_hf(m, dir.str(), DType::F32);
    const Model r = model_load(dir.str());
    expect_same_weights(m, r);
    EXPECT_EQ(r.num_parameters(), m.num_parameters());
    EXPECT_TRUE(r.report.unused.empty());
    if (std::string(type) == "qwen3_moe") {
      EXPECT_EQ(r.report.experts_layout, "per-expert");
    }
  }
}

TEST(ModelIo, ShardedAndBf16) {
  test::TempDir dir;
  const Model m = model_random(tiny("qwen3"), 8, 0.1f);
  model_save_hf(m, dir.str(), DType::BF16, 4096);
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  const Model r = model_load(dir.str());
  // bf16 keeps 7 explicit mantissa bits: relative rounding error <= 2^-8.
  for (const TensorSpec& s : model_tensor_specs(m.config)) {
    const Tensor& x = weights_field(m.weights, s);
    const Tensor& y = weights_field(r.weights, s);
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_LE(std::fabs(x.f32()[i] - y.f32()[i]), std::fabs(x.f32()[i]) * (1.0f / 256)) << s.name;
  }
  EXPECT_EQ(r.report.dtype_params.at("bf16"), m.num_parameters());
}

TEST(ModelIo, FusedExpertsGiveTheSameModel) {
  test::TempDir per, fused;
  const Model m = model_random(tiny("qwen3_moe"), 9, 0.2f);
  model_save_hf(m, per.str(), DType::F32);
  // Rewrite the per-expert checkpoint in transformers 5's fused layout.
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(per.str());
  NamedTensors out;
  for (const auto& [name, e] : ck.entries())
    if (name.find(".experts.") == std::string::npos) out.emplace_back(name, e.tensor);
  const ModelConfig& c = m.config;
  const int64_t E = c.num_experts, I = c.moe_intermediate_size, H = c.hidden_size;
  for (int l = 0; l < 2; ++l) {
    const LayerWeights& w = m.weights.layers[size_t(l)];
    Tensor gate_up = Tensor::empty(DType::F32, {E, 2 * I, H});
    for (int64_t e = 0; e < E; ++e) {
      std::memcpy(gate_up.f32() + e * 2 * I * H, w.ffn_gate_exps.f32() + e * I * H, size_t(I * H) * 4);
      std::memcpy(gate_up.f32() + (e * 2 + 1) * I * H, w.ffn_up_exps.f32() + e * I * H, size_t(I * H) * 4);
    }
    const std::string base = "model.layers." + std::to_string(l) + ".mlp.experts.";
    out.emplace_back(base + "gate_up_proj", gate_up);
    out.emplace_back(base + "down_proj", w.ffn_down_exps);
  }
  safetensors_write(fused / "model.safetensors", out);
  std::filesystem::copy_file(per / "config.json", fused / "config.json");
  const Model r = model_load(fused.str());
  EXPECT_EQ(r.report.experts_layout, "fused");
  expect_same_weights(m, r);
}

TEST(ModelIo, CheckpointConfigMismatches) {
  test::TempDir dir;
  const Model m = model_random(tiny("qwen3"), 10, 0.1f);
  model_save_hf(m, dir.str(), DType::F32);
  const std::string cfg = dir / "config.json";
  const Json good = json_load_file(cfg);

  Json j = good;
  j["intermediate_size"] = 25;  // shape mismatch
  json_save_file(cfg, j);
  expect_load_error<ConfigError>(dir.str(), "mlp.gate_proj.weight' has shape [24, 16], config.json implies [25, 16]");

  j = good;
  j["num_hidden_layers"] = 3;  // a layer the checkpoint does not have
  j.erase("layer_types");
  json_save_file(cfg, j);
  expect_load_error<FormatError>(dir.str(), "model.layers.2.input_layernorm.weight' is missing");

  j = good;
  j["tie_word_embeddings"] = false;
  json_save_file(cfg, good);
  // Drop lm_head from an untied checkpoint: the hint explains tie_word_embeddings.
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir.str());
  NamedTensors out;
  for (const auto& [name, e] : ck.entries())
    if (name != "lm_head.weight") out.emplace_back(name, e.tensor.clone());
  Tensor ids = Tensor::zeros(DType::I32, {16});
  out.emplace_back("model.norm.weight.ints", ids);
  safetensors_write(dir / "model.safetensors", out);
  expect_load_error<FormatError>(dir.str(), "tie_word_embeddings");

  // A tensor of an integer dtype where a weight belongs.
  out.clear();
  const SafetensorsCheckpoint ck2 = SafetensorsCheckpoint::open(dir.str());
  for (const auto& [name, e] : ck2.entries())
    out.emplace_back(name, name == "model.norm.weight" ? ids : e.tensor.clone());
  out.emplace_back("lm_head.weight", m.weights.output);
  safetensors_write(dir / "model.safetensors", out);
  expect_load_error<FormatError>(dir.str(), "model.norm.weight' has dtype I32");
}

TEST(ModelIo, TiedHeadSharesTheEmbedding) {
  ModelConfig c = tiny("qwen3");
  c.tie_word_embeddings = true;
  test::TempDir dir;
  model_save_hf(model_random(c, 11, 0.1f), dir.str(), DType::F32);
  const Model r = model_load(dir.str());
  EXPECT_EQ(r.weights.output.data(), r.weights.token_embd.data());
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_EQ(model_logits(r, ids).shape(), Shape({3, 50}));
}

}  // namespace tune
