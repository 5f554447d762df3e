// ModelConfig parsing for every supported model_type, and the errors for missing fields, bad values and unknown
// model types.
#include "model/config.h"

#include "model/presets.h"
#include "test_util.h"

namespace tune {

namespace {

Json qwen3_json() {
  return Json::parse(R"({"model_type":"qwen3","vocab_size":100,"hidden_size":32,"num_hidden_layers":2,
    "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"intermediate_size":48,
    "rope_parameters":{"rope_type":"default","rope_theta":5000.0},"tie_word_embeddings":true})");
}

template <class E>
void expect_config_error(const Json& j, const std::string& needle) {
  try {
    model_config_from_json(j, "config.json");
    FAIL() << "expected an error mentioning " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Config, Qwen3) {
  const ModelConfig c = model_config_from_json(qwen3_json(), "config.json");
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rotary_dim, 16);
  EXPECT_EQ(c.rope_theta, 5000.0);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  ASSERT_EQ(c.layers.size(), 2u);
  EXPECT_EQ(c.layers[1].mixer, MixerKind::Attention);
  EXPECT_EQ(c.layers[1].ffn, FfnKind::Dense);
}

TEST(Config, Qwen2DerivesHeadDimAndHasBias) {
  Json j = qwen3_json();
  j["model_type"] = "qwen2";
  j.erase("head_dim");
  j.erase("rope_parameters");
  j["rope_theta"] = 1e6;
  const ModelConfig c = model_config_from_json(j, "config.json");
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.rope_theta, 1e6);
}

TEST(Config, Qwen3MoeLayerKinds) {
  Json j = qwen3_json();
  j["model_type"] = "qwen3_moe";
  j["num_hidden_layers"] = 4;
  j["num_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 24;
  j["norm_topk_prob"] = true;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  const ModelConfig c = model_config_from_json(j, "config.json");
  // (i+1) % 2 == 0 and not in mlp_only_layers: only layer 1 is MoE.
  EXPECT_EQ(c.layers[0].ffn, FfnKind::Dense);
  EXPECT_EQ(c.layers[1].ffn, FfnKind::Moe);
  EXPECT_EQ(c.layers[2].ffn, FfnKind::Dense);
  EXPECT_EQ(c.layers[3].ffn, FfnKind::Dense);
  EXPECT_TRUE(c.norm_topk_prob);
}

TEST(Config, Qwen35NestedTextConfig) {
  const ModelConfig c = preset_config("qwen3.5-0.8b");
  EXPECT_EQ(c.arch, Arch::Qwen3_5);
  EXPECT_TRUE(c.norm_zero_centered);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rotary_dim, 64);
  EXPECT_EQ(c.rope_theta, 1e7);
  ASSERT_EQ(c.layers.size(), 24u);
  for (size_t i = 0; i < 24; ++i)
    EXPECT_EQ(c.layers[i].mixer, (i + 1) % 4 == 0 ? MixerKind::GatedAttention : MixerKind::GatedDeltaNet);
  EXPECT_EQ(c.q_dim(MixerKind::GatedAttention), 8 * 256 * 2);

  const ModelConfig m = preset_config("qwen3.5-35b-a3b");
  EXPECT_EQ(m.arch, Arch::Qwen3_5Moe);
  EXPECT_TRUE(m.norm_topk_prob);
  EXPECT_EQ(m.shared_expert_intermediate_size, 512);
  EXPECT_EQ(m.layers[0].ffn, FfnKind::Moe);

  // Explicit layer_types win over full_attention_interval, and round-trip through model_config_to_json.
  Json j = model_config_to_json(c);
  j["text_config"]["layer_types"][0] = "full_attention";
  const ModelConfig r = model_config_from_json(j, "config.json");
  EXPECT_EQ(r.layers[0].mixer, MixerKind::GatedAttention);
  EXPECT_EQ(r.layers[1].mixer, MixerKind::GatedDeltaNet);
  EXPECT_EQ(r.rotary_dim, 64);
}

TEST(Config, EveryPresetParsesAndRoundTrips) {
  for (const std::string& name : preset_names()) {
    const ModelConfig c = preset_config(name);
    const ModelConfig r = model_config_from_json(model_config_to_json(c), name);
    EXPECT_EQ(r.arch, c.arch) << name;
    EXPECT_EQ(r.num_layers, c.num_layers) << name;
    EXPECT_EQ(r.head_dim, c.head_dim) << name;
    EXPECT_EQ(r.intermediate_size, c.intermediate_size) << name;
    EXPECT_EQ(r.tie_word_embeddings, c.tie_word_embeddings) << name;
    for (size_t i = 0; i < c.layers.size(); ++i) {
      EXPECT_EQ(r.layers[i].mixer, c.layers[i].mixer) << name;
      EXPECT_EQ(r.layers[i].ffn, c.layers[i].ffn) << name;
    }
  }
  EXPECT_THROW(preset_config("qwen9-1t"), ConfigError);
}

TEST(Config, Errors) {
  Json j = qwen3_json();
  j.erase("hidden_size");
  expect_config_error<ConfigError>(j, "'hidden_size'");
  j = qwen3_json();
  j["model_type"] = "llama";
  expect_config_error<UnsupportedError>(j, "'llama'");
  j = qwen3_json();
  j.erase("model_type");
  expect_config_error<ConfigError>(j, "'model_type'");
  j = qwen3_json();
  j["num_attention_heads"] = "four";
  expect_config_error<ConfigError>(j, "must be an integer");
  j = qwen3_json();
  j["num_key_value_heads"] = 3;
  expect_config_error<ConfigError>(j, "not a multiple");
  j = qwen3_json();
  j["rope_parameters"]["rope_type"] = "yarn";
  expect_config_error<UnsupportedError>(j, "rope_parameters.rope_type");
  j = qwen3_json();
  j["model_type"] = "qwen3_moe";
  expect_config_error<ConfigError>(j, "'num_experts'");
  Json q = model_config_to_json(preset_config("qwen3.5-0.8b"));
  q["text_config"].erase("linear_num_value_heads");
  expect_config_error<ConfigError>(q, "'text_config.linear_num_value_heads'");
}

}  // namespace tune
