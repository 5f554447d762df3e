// The KV-cache engine (infer/engine.h) against the reference forward (model_logits) and against itself:
//  - f32 cache on the golden models (f32 weights; qwen2, qwen3, qwen3moe incl. mixed dense/MoE layers, with
//  and
//    without a LoRA adapter): prefill and one-token decode steps equal model_logits to float rounding (the
//    engine follows ggml's f32 steps, the reference sums in double: bound 1e-4 of the logits' range);
//  - f16 cache: the keys, values and queries rounded to f16 (relative 2^-11) move the logits by ~1e-3 of
//  their
//    range: bound 1e-2;
//  - quantized GGUF weights: prefill of fewer than 64 rows and decode steps run the same arithmetic per row,
//  so
//    their logits are bit-identical, at every SIMD level; against model_logits on the same weights see below;
//    64 rows or more take llama.cpp's f32 prefill path and a decode step over 512+ cache rows its split path
//    (f16 weights, bound 1e-2 as the f16 cache);
//  - truncating the cache and continuing equals a fresh run; bad ids and overlong sequences are errors that
//    leave the cache as it was.
#include "infer/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "export/gguf_export.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/lora_peft.h"
#include "model/model.h"
#include "model/model_gguf.h"
#include "quant/cpu_features.h"
#include "test_util.h"

namespace tune {

namespace {

using test::TempDir;

std::string golden(const std::string& name) {
  return std::string(TUNE_TEST_DATA_DIR) + "/golden/" + name;
}

std::vector<int32_t> ids_for(int64_t V, int64_t n, int64_t seed = 0) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((seed * 31 + 7 + 13 * i + (i * i) % 17) % V));
  return ids;
}

// Logits of every position: one batch, or one decode step per id.
Tensor run_prefill(const Model& m, std::span<const int32_t> ids, const EngineOptions& o,
                   const LoraAdapter* lora = nullptr) {
  Engine e(m, o, lora);
  return e.forward(ids, int64_t(ids.size()));
}

Tensor run_steps(const Model& m, std::span<const int32_t> ids, const EngineOptions& o,
                 const LoraAdapter* lora = nullptr) {
  Engine e(m, o, lora);
  const int64_t V = m.weights.output.size(0);
  Tensor out = Tensor::empty(DType::F32, {int64_t(ids.size()), V});
  for (size_t t = 0; t < ids.size(); ++t) {
    const Tensor l = e.forward(ids.subspan(t, 1));
    std::memcpy(out.f32() + int64_t(t) * V, l.f32(), size_t(V) * 4);
  }
  return out;
}

// max |a - b| / (max b - min b).
double rel_gap(const Tensor& a, const Tensor& b) {
  double d = 0, lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < a.numel(); ++i) {
    d = std::max(d, double(std::fabs(a.f32()[i] - b.f32()[i])));
    lo = std::min(lo, double(b.f32()[i]));
    hi = std::max(hi, double(b.f32()[i]));
  }
  return d / (hi - lo);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

const char* kGoldens[] = {"qwen2_gqa2_untied_sharded",
                          "qwen2_gqa4_hd16_tied",
                          "qwen3_gqa4_hd24_untied",
                          "qwen3_mha_hd16_tied",
                          "qwen3moe_e4_top1_norm_tied",
                          "qwen3moe_e6_top3_nonorm_mixed_untied",
                          "qwen3moe_e8_top2_nonorm_sparse2_tied"};

TEST(Engine, MatchesReferenceForwardOnGoldenModels) {
  for (const char* name : kGoldens) {
    const Model m = model_load(golden(name));
    const auto ids = ids_for(m.config.vocab_size, 21);
    const Tensor ref = model_logits(m, ids);
    EngineOptions f32;
    f32.kv_type = DType::F32;
    const double g_pre = rel_gap(run_prefill(m, ids, f32), ref), g_dec = rel_gap(run_steps(m, ids, f32), ref);
    const double g_f16 = rel_gap(run_steps(m, ids, {}), ref);
    std::printf("%-40s f32 cache: prefill %.1e decode %.1e | f16 cache: %.1e\n", name, g_pre, g_dec, g_f16);
    EXPECT_LE(g_pre, 1e-4) << name;
    EXPECT_LE(g_dec, 1e-4) << name;
    EXPECT_LE(g_f16, 1e-2) << name;
  }
}

TEST(Engine, LoraAdapterMatchesReference) {
  for (const char* name : {"qwen3_all7", "qwen3moe_experts", "qwen2_all7_rslora"}) {
    const std::string adapter = std::string(TUNE_TEST_DATA_DIR) + "/lora/" + name + "/final_adapter";
    const std::string base = std::string(TUNE_SOURCE_DIR) + "/" +
                             nlohmann::json::parse(std::ifstream(adapter + "/adapter_config.json"))
                                 .at("base_model_name_or_path")
                                 .get<std::string>();
    const Model m = model_load(base);
    const LoraAdapter ad = lora_load_peft(adapter, m);
    const auto ids = ids_for(m.config.vocab_size, 13, 1);
    EngineOptions f32;
    f32.kv_type = DType::F32;
    const Tensor ref = model_logits(m, ids, &ad), base_logits = model_logits(m, ids);
    const double g = rel_gap(run_steps(m, ids, f32, &ad), ref);
    std::printf("%-20s adapter: %.1e (adapter's own effect %.1e)\n", name, g, rel_gap(base_logits, ref));
    EXPECT_LE(g, 1e-4) << name;
    EXPECT_GT(rel_gap(base_logits, ref), 1e-3) << name << ": the adapter changes nothing, the test is void";
  }
}

// Seeded models with 256-wide rows, so the k-quant and SIMD paths run; hd 64 covers the f16 dot's 64-blocks.
const char* kDense =
    R"({"model_type":"qwen3","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"head_dim":64,"intermediate_size":512,"rms_norm_eps":1e-6,"tie_word_embeddings":false,)"
    R"("max_position_embeddings":2048,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";
const char* kMoe =
    R"({"model_type":"qwen3_moe","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":1,"head_dim":64,"intermediate_size":512,"moe_intermediate_size":256,"num_experts":4,)"
    R"("num_experts_per_tok":2,"norm_topk_prob":true,"rms_norm_eps":1e-6,"tie_word_embeddings":true,)"
    R"("max_position_embeddings":2048,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";

Model quantized(const TempDir& tmp, const char* config, GgufFileType type, const std::string& file) {
  const Model m = model_random(model_config_from_json(nlohmann::json::parse(config), "test config"), 3, 0.1f);
  GgufExportOptions o;
  o.type = type;
  gguf_export(m, nullptr, tmp / file, o);
  return model_load_gguf(tmp / file, true);
}

TEST(Engine, QuantizedPrefillAndDecodeAgreeAtEverySimdLevel) {
  TempDir tmp;
  for (const char* config : {kDense, kMoe}) {
    for (GgufFileType type : {GgufFileType::Q4_K_M, GgufFileType::Q8_0, GgufFileType::F16}) {
      const Model m = quantized(tmp, config, type, "m.gguf");
      const auto ids = ids_for(300, 40);
      const std::string what = std::string(config == kDense ? "dense " : "moe ") + gguf_file_type_name(type);
      const Tensor pre = run_prefill(m, ids, {}), dec = run_steps(m, ids, {});
      EXPECT_TRUE(same_bits(pre, dec)) << what << ": prefill and decode differ by " << rel_gap(pre, dec);
      for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2}) {
        if (level > simd_level_supported()) continue;
        set_simd_level(level);
        const Tensor l = run_prefill(m, ids, {});
        set_simd_level(SimdLevel::Avx512);
        EXPECT_TRUE(same_bits(l, pre)) << what << " at " << simd_level_name(level);
      }
      // The reference forward over the same kept weights, against the f32 cache: both run the same matrix
      // products, but the steps between them differ at f32 level (RoPE angles by repeated multiplication, as
      // ggml builds them, differ from powf by ~1e-6 relative at these positions), and a difference that moves
      // an activation across an 8-bit rounding step moves the logits by a quantization step: bound 2e-2 of
      // the range (seen: up to 8e-3; F16 weights, with nothing quantized, 4e-5).
      EngineOptions f32;
      f32.kv_type = DType::F32;
      const double g = rel_gap(run_prefill(m, ids, f32), model_logits(m, ids));
      std::printf("%-16s engine (f32 cache) vs model_logits on the same weights: %.1e\n", what.c_str(), g);
      EXPECT_LE(g, type == GgufFileType::F16 ? 1e-4 : 2e-2) << what;
    }
  }
}

TEST(Engine, LongPromptAndLongDecodeStayClose) {
  TempDir tmp;
  // F16 weights: no activation quantization to amplify the attention's rounding differences.
  const Model m = quantized(tmp, kDense, GgufFileType::F16, "m.gguf");
  const auto ids = ids_for(300, 300, 2);
  EngineOptions ctx;
  ctx.context = 1024;
  EngineOptions f32 = ctx;
  f32.kv_type = DType::F32;
  // 83 rows in one batch (llama.cpp's tiled f32 prefill; 8-row SIMD blocks and a partial one) against decode
  // steps (f16, split over the threads past 256 rows: n_kv >= 512) and against the f32 cache; the scalar code
  // gives the SIMD prefill's bits.
  Engine a(m, ctx), b(m, f32), c(m, ctx);
  const std::span<const int32_t> all(ids);
  const Tensor pa = a.forward(all.first(83), 83);
  set_simd_level(SimdLevel::Scalar);
  const Tensor ps = Engine(m, ctx).forward(all.first(83), 83);
  set_simd_level(SimdLevel::Avx512);
  EXPECT_TRUE(same_bits(pa, ps)) << "scalar and SIMD tiled prefill differ by " << rel_gap(pa, ps);
  Tensor pc;
  for (int64_t t = 0; t < 83; ++t) pc = c.forward(all.subspan(size_t(t), 1));
  const double g_prefill = rel_gap(pa.slice_rows(82, 83), pc);
  b.forward(all.first(83));
  double g_decode = 0;
  for (size_t t = 83; t < ids.size(); ++t) {
    const Tensor la = a.forward(all.subspan(t, 1)), lb = b.forward(all.subspan(t, 1));
    g_decode = std::max(g_decode, rel_gap(la, lb));
  }
  std::printf("tiled prefill vs decode %.1e, f16 split decode vs f32 cache %.1e\n", g_prefill, g_decode);
  EXPECT_LE(g_prefill, 1e-2);
  EXPECT_LE(g_decode, 1e-2);
  EXPECT_GT(g_prefill, 0.0);  // the two paths do differ: the test sees both
}

TEST(Engine, TruncateAndContinueEqualsAFreshRun) {
  TempDir tmp;
  const Model m = quantized(tmp, kMoe, GgufFileType::Q4_K_M, "m.gguf");
  const std::vector<int32_t> a = {5, 17, 42, 99, 3, 7}, b = {5, 17, 42, 250, 11};
  Engine e(m);
  e.forward(a);
  e.truncate(3);
  EXPECT_EQ(e.size(), 3);
  const Tensor cont = e.forward(std::span<const int32_t>(b).subspan(3), 2);
  Engine f(m);
  const Tensor fresh = f.forward(b, 2);
  EXPECT_TRUE(same_bits(cont, fresh));
}

TEST(Engine, ErrorsLeaveTheCacheUnchanged) {
  const Model m = model_load(golden("qwen3_mha_hd16_tied"));
  EngineOptions o;
  o.context = 8;
  Engine e(m, o);
  e.forward(std::vector<int32_t>{1, 2, 3});
  const std::vector<int32_t> bad = {4, int32_t(m.config.vocab_size)};
  EXPECT_THROW(e.forward(bad), ConfigError);
  EXPECT_EQ(e.size(), 3);
  EXPECT_THROW(e.forward(std::vector<int32_t>(6, 1)), ConfigError);  // 9 positions > context 8
  EXPECT_EQ(e.size(), 3);
  EXPECT_NO_THROW(e.forward(std::vector<int32_t>(5, 1)));
  EXPECT_EQ(e.size(), 8);
  const Model q35 = model_load(golden("qwen3_5_dense_nv2nk2_tied"));
  EXPECT_FALSE(engine_supports(q35.config));
  EXPECT_THROW(Engine{q35}, UnsupportedError);
}

}  // namespace

}  // namespace tune
