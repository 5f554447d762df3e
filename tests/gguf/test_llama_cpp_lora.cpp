// LoRA adapters exported as llama.cpp adapter GGUFs: the layout convert_lora_to_gguf.py writes (keys, names,
// ne, types), and llama.cpp (node-llama-cpp's context `lora` option) over the base model's F32 GGUF plus the
// adapter against tune's forward of the base model with the PEFT adapter: next-token probabilities within 1e-3
// for the golden PEFT adapters (plain and rsLoRA) and for a seeded qwen3moe adapter on attention and experts.
// The llama.cpp part skips when node-llama-cpp is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/rng.h"
#include "export/gguf_export.h"
#include "export/lora_gguf.h"
#include "io/gguf.h"
#include "io/json.h"
#include "llama_node.h"
#include "model/forward.h"
#include "model/lora_peft.h"
#include "model/model.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace tune {
namespace {

using test::run_tune;
using test::TempDir;

// llama.cpp keeps its KV cache in f16 and accumulates flash attention in f16: ~2-5e-4 in probability already
// without an adapter (tests/gguf/test_llama_cpp.cpp); the adapter's own f32 products add little.
constexpr double kProbBound = 1e-3;

std::string lora_dir(const std::string& name) { return std::string(TUNE_TEST_DATA_DIR) + "/lora/" + name; }

std::string base_of(const std::string& adapter) {
  return std::string(TUNE_SOURCE_DIR) + "/" +
         json_load_file(adapter + "/adapter_config.json").at("base_model_name_or_path").get<std::string>();
}

std::vector<int32_t> ids_for(int64_t V) {
  std::vector<int32_t> ids;
  for (int32_t x : {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26}) ids.push_back(int32_t(x % V));
  return ids;
}

void export_f32(const Model& m, const std::string& path) {
  GgufExportOptions o;
  o.type = GgufFileType::F32;
  gguf_export(m, nullptr, path, o);
}

// llama.cpp over base.gguf + adapter.gguf against tune's base + PEFT adapter.
void expect_llama_matches(const Model& m, const LoraAdapter& ad, const std::string& base_gguf,
                          const std::string& lora_gguf, const std::string& what) {
  const std::vector<int32_t> ids = ids_for(m.config.vocab_size);
  const nlohmann::json with = test::llama_next_token(base_gguf, ids, 4, lora_gguf);
  const nlohmann::json without = test::llama_next_token(base_gguf, ids, 4);
  if (with.is_null() || without.is_null()) return;
  const Tensor ours = model_logits(m, ids, &ad), ours_base = model_logits(m, ids);
  const double gap = test::max_prob_gap(ours, with, 4);
  // The adapter must matter: llama.cpp without it is several bounds away from tune with it.
  const double effect = test::max_prob_gap(ours, without, 4), base_gap = test::max_prob_gap(ours_base, without, 4);
  std::printf("%-28s max|dp| with adapter %.2e (base alone %.2e; adapter effect %.2e)\n", what.c_str(), gap,
              base_gap, effect);
  EXPECT_LE(gap, kProbBound) << what;
  EXPECT_GT(effect, 5 * kProbBound) << what << ": the adapter hardly changes the output";
}

class LlamaLoraGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaLoraGolden, NextTokenProbabilitiesMatch) {
  SKIP_WITHOUT_LLAMA_NODE();
  TempDir tmp;
  const std::string adapter = lora_dir(GetParam()) + "/final_adapter";
  const Model m = model_load(base_of(adapter));
  const LoraAdapter ad = lora_load_peft(adapter, m);
  export_f32(m, tmp / "base.gguf");
  lora_export_gguf(ad, m, tmp / "lora.gguf", LoraGgufOptions{});
  expect_llama_matches(m, ad, tmp / "base.gguf", tmp / "lora.gguf", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Peft, LlamaLoraGolden, ::testing::Values("qwen3_all7", "qwen2_all7_rslora", "qwen3_tied_qv"),
                         [](const auto& info) { return std::string(info.param); });

// The converter's layout: keys and their types, one .lora_a / .lora_b pair per adapted weight with A's ne
// {in, r} and B's ne {r, out}; rsLoRA written with alpha·sqrt(r); F16 / Q8_0 types (Q8_0 falls back to F16 for
// rows that are no multiple of 32).
TEST(LoraGguf, ConverterLayout) {
  TempDir tmp;
  for (const char* name : {"qwen3_all7", "qwen2_all7_rslora"}) {
    SCOPED_TRACE(name);
    const std::string adapter = lora_dir(name) + "/final_adapter";
    const Model m = model_load(base_of(adapter), DType::F32, Device::CPU, false);
    const LoraAdapter ad = lora_load_peft(adapter, m);
    const std::string out = tmp / (std::string(name) + ".gguf");
    auto r = run_tune("export --model " + base_of(adapter) + " --adapter " + adapter + " --lora-gguf " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const GgufFile f(out);
    EXPECT_EQ(f.get_string("general.architecture"), gguf_arch_name(m.config));
    EXPECT_EQ(f.get_string("general.type"), "adapter");
    EXPECT_EQ(f.get_string("adapter.type"), "lora");
    EXPECT_EQ(f.get_string("general.name"), "final_adapter");
    EXPECT_EQ(f.get("adapter.lora.alpha").type(), GgufType::FLOAT32);
    EXPECT_EQ(f.get_int("general.quantization_version"), 2);
    const double alpha = ad.config.rslora ? ad.config.alpha * std::sqrt(double(ad.config.rank)) : ad.config.alpha;
    EXPECT_FLOAT_EQ(float(f.get_float("adapter.lora.alpha")), float(alpha));
    // 7 targets x 2 tensors per layer.
    EXPECT_EQ(f.tensors().size(), size_t(m.config.num_layers * 14));
    const int64_t H = m.config.hidden_size, I = m.config.intermediate_size, R = ad.config.rank;
    const GgufTensorInfo* a = f.find_tensor("blk.1.ffn_down.weight.lora_a");
    const GgufTensorInfo* b = f.find_tensor("blk.1.ffn_down.weight.lora_b");
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->ne, (std::vector<int64_t>{I, R}));
    EXPECT_EQ(b->ne, (std::vector<int64_t>{R, H}));
    EXPECT_EQ(a->ggml_type, 0u);
    const Tensor pa = f.tensor(a->name);
    const LoraWeights& lw = ad.layers[1][size_t(LoraTarget::Down)];
    for (int64_t i = 0; i < lw.A.numel(); ++i) ASSERT_EQ(pa.ptr<float>()[i], lw.A.f32()[i]);
  }
  const std::string adapter = lora_dir("qwen3_all7") + "/final_adapter";
  const std::string base = base_of(adapter);
  auto r = run_tune("export --model " + base + " --adapter " + adapter + " --lora-gguf " + tmp / "f16.gguf" +
                    " --lora-type F16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(GgufFile(tmp / "f16.gguf").find_tensor("blk.0.attn_q.weight.lora_b")->ggml_type, 1u);
  r = run_tune("export --model " + base + " --adapter " + adapter + " --lora-gguf " + tmp / "q8.gguf" +
               " --lora-type Q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const GgufFile q8(tmp / "q8.gguf");
  // Q8_0 where a row (A: `in` values) is a whole number of 32-blocks, F16 otherwise (B: r = 4 values).
  const GgufTensorInfo* qa = q8.find_tensor("blk.0.attn_q.weight.lora_a");
  EXPECT_EQ(qa->ggml_type, qa->ne[0] % 32 == 0 ? 8u : 1u);
  EXPECT_EQ(q8.find_tensor("blk.0.attn_q.weight.lora_b")->ggml_type, 1u);
  r = run_tune("export --model " + base + " --adapter " + adapter + " --lora-gguf " + tmp / "x.gguf" +
               " --lora-type Q4_K_M");
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// A seeded all-MoE qwen3moe (renormalized top-k, as llama.cpp's qwen3moe) with an adapter on attention and on the
// experts (PEFT target_parameters): llama.cpp applies the 3-D expert pairs through mul_mat_id.
TEST(LlamaLoraSeeded, Qwen3MoeExperts) {
  SKIP_WITHOUT_LLAMA_NODE();
  TempDir tmp;
  const char* config =
      R"({"model_type":"qwen3_moe","vocab_size":300,"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,)"
      R"("num_key_value_heads":2,"head_dim":16,"intermediate_size":128,"moe_intermediate_size":32,"num_experts":4,)"
      R"("num_experts_per_tok":2,"norm_topk_prob":true,"rms_norm_eps":1e-6,"tie_word_embeddings":false,)"
      R"("max_position_embeddings":512,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";
  const Model m = model_random(model_config_from_json(json_parse(config, "config"), "config"), 11, 0.2f);
  model_save_hf(m, tmp / "model", DType::F32);
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.targets = lora_targets_parse("q,k,v,o,experts");
  LoraAdapter ad = LoraAdapter::init(m.config, lc, 3);
  Rng rng(5);
  for (auto& layer : ad.layers)
    for (LoraWeights& w : layer)
      if (w.defined())
        for (int64_t i = 0; i < w.B.numel(); ++i) w.B.f32()[i] = 0.2f * rng.normal();
  lora_save_peft(ad, m, tmp / "adapter", tmp / "model");
  // The base model comes from adapter_config.json's base_model_name_or_path (an absolute path here).
  const auto r = run_tune("export --adapter " + tmp / "adapter" + " --lora-gguf " + tmp / "lora.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const GgufFile f(tmp / "lora.gguf");
  const GgufTensorInfo* ga = f.find_tensor("blk.0.ffn_gate_exps.weight.lora_a");
  const GgufTensorInfo* ub = f.find_tensor("blk.0.ffn_up_exps.weight.lora_b");
  const GgufTensorInfo* db = f.find_tensor("blk.1.ffn_down_exps.weight.lora_b");
  ASSERT_TRUE(ga && ub && db);
  EXPECT_EQ(ga->ne, (std::vector<int64_t>{64, 4, 4}));
  EXPECT_EQ(ub->ne, (std::vector<int64_t>{4, 32, 4}));
  EXPECT_EQ(db->ne, (std::vector<int64_t>{4, 64, 4}));
  const LoraAdapter loaded = lora_load_peft(tmp / "adapter", m);
  export_f32(m, tmp / "base.gguf");
  expect_llama_matches(m, loaded, tmp / "base.gguf", tmp / "lora.gguf", "qwen3moe attention+experts");
}

}  // namespace
}  // namespace tune
