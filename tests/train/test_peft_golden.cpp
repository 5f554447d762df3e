// LoRA training against transformers+PEFT (tests/data/lora, made by tools/reference/make_lora_goldens.py in float64
// from PEFT init adapters): gradients of every lora_A/lora_B at the init adapter (relative L2 <= 1e-4), the losses of
// 5 AdamW steps (relative 1e-5) and the adapter after them (relative L2 <= 1e-4).
#include <cmath>
#include <filesystem>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/lora_peft.h"
#include "train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace tune {

namespace {

const fs::path kRoot = fs::path(TUNE_TEST_DATA_DIR) / "lora";

struct Case {
  std::string name;
  Json steps;
  Model model;
  std::vector<Row> rows;
};

Case load_case(const std::string& name) {
  Case c;
  c.name = name;
  c.steps = json_load_file((kRoot / name / "steps.json").string());
  c.model = model_load((fs::path(TUNE_TEST_DATA_DIR) / "golden" / c.steps["base_golden"].get<std::string>()).string());
  const SafetensorsFile batch((kRoot / name / "batch.safetensors").string());
  const Tensor ids = batch.entries().at("input_ids").tensor.to(DType::I32);
  const Tensor labels = batch.entries().at("labels").tensor.to(DType::I32);
  const int64_t B = ids.size(0), T = ids.size(1);
  std::vector<Example> examples(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    examples[size_t(b)].ids.assign(ids.ptr<int32_t>() + b * T, ids.ptr<int32_t>() + (b + 1) * T);
    examples[size_t(b)].labels.assign(labels.ptr<int32_t>() + b * T, labels.ptr<int32_t>() + (b + 1) * T);
  }
  for (int64_t b = 0; b < B; ++b) c.rows.push_back(row_build(examples, std::vector<int64_t>{b}, T, 0));
  return c;
}

double rel_l2(const Tensor& got, const Tensor& want) {
  const Tensor g = got.to(DType::F64), w = want.to(DType::F64);
  double num = 0, den = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    num += std::pow(g.ptr<double>()[i] - w.ptr<double>()[i], 2);
    den += std::pow(w.ptr<double>()[i], 2);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Compares every LoRA tensor of `a` (A/B or their gradients, in PEFT's layout) with the reference file, key by
// key. Returns the largest relative L2 error.
double expect_tensors(const Case& c, const LoraAdapter& a, const std::string& file, bool grads, double tol) {
  const SafetensorsFile ref(file);
  size_t n = 0;
  double worst = 0;
  for (const auto& [key, got] : lora_peft_tensors(a, c.model, grads)) {
    const auto it = ref.entries().find(key);
    EXPECT_NE(it, ref.entries().end()) << c.name << ": " << key;
    if (it == ref.entries().end()) continue;
    const double e = rel_l2(got, it->second.tensor);
    worst = std::max(worst, e);
    EXPECT_LE(e, tol) << c.name << ": " << key;
    ++n;
  }
  EXPECT_EQ(n, ref.entries().size()) << c.name << ": tune's adapter and PEFT's differ in tensors";
  return worst;
}

const char* kCases[] = {"qwen3_all7",
                        "qwen2_all7_rslora",
                        "qwen3_tied_qv",
                        "qwen3moe_attn_dense",
                        "qwen3moe_experts",
                        "qwen35_dense_all10",
                        "qwen35moe_attn_gdn_shared"};

}  // namespace

TEST(PeftGolden, GradientsAtInit) {
  for (const char* name : kCases) {
    Case c = load_case(name);
    LoraAdapter a = lora_load_peft((kRoot / name / "init_adapter").string(), c.model);
    OptimizerConfig oc;
    Optimizer opt(oc, a);
    // lr 0 and no clipping leave the adapter and the gradients as computed.
    const StepResult s = train_step(c.model, a, opt, c.rows, 0.0, 0.0, 0);
    EXPECT_EQ(s.trained, c.steps["hyperparameters"]["trained_tokens_total"].get<int64_t>()) << name;
    const double worst = expect_tensors(c, a, (kRoot / name / "grads.safetensors").string(), true, 1e-4);
    std::printf("[peft] %-22s loss %.12f (PEFT %.12f), worst gradient rel L2 %.2e\n", name, s.loss,
                c.steps["steps"][0]["loss"].get<double>(), worst);
  }
}

TEST(PeftGolden, FiveAdamWSteps) {
  for (const char* name : kCases) {
    Case c = load_case(name);
    const Json& hp = c.steps["hyperparameters"];
    LoraAdapter a = lora_load_peft((kRoot / name / "init_adapter").string(), c.model);
    OptimizerConfig oc;
    oc.beta1 = hp["betas"][0];
    oc.beta2 = hp["betas"][1];
    oc.eps = hp["eps"];
    oc.weight_decay = hp["weight_decay"];
    Optimizer opt(oc, a);
    double worst_loss = 0;
    for (int step = 0; step < 5; ++step) {
      const Json& ref = c.steps["steps"][size_t(step)];
      const StepResult s = train_step(c.model, a, opt, c.rows, hp["lr"].get<double>(), hp["max_grad_norm"], 0);
      const double want = ref["loss"];
      EXPECT_LE(std::fabs(s.loss - want), 1e-5 * std::fabs(want)) << name << " step " << step + 1;
      worst_loss = std::max(worst_loss, std::fabs(s.loss - want) / std::fabs(want));
      EXPECT_NEAR(s.grad_norm, ref["grad_norm_pre_clip"].get<double>(), 1e-4 * ref["grad_norm_pre_clip"].get<double>())
          << name << " step " << step + 1;
    }
    const double worst = expect_tensors(c, a, (kRoot / name / "final_adapter_f64.safetensors").string(), false, 1e-4);
    std::printf("[peft] %-22s 5 steps: worst loss rel err %.2e, final adapter worst rel L2 %.2e\n", name, worst_loss,
                worst);
  }
}

TEST(PeftGolden, ExpertAdapterRoundTripsAndForeignParametersAreRefused) {
  Case c = load_case("qwen3moe_experts");
  const LoraAdapter a = lora_load_peft((kRoot / c.name / "init_adapter").string(), c.model);
  test::TempDir dir;
  lora_save_peft(a, c.model, dir.str(), "base");
  expect_tensors(c, lora_load_peft(dir.str(), c.model),
                 (kRoot / c.name / "init_adapter" / "adapter_model.safetensors").string(), false, 0.0);
  Json cfg = json_load_file(dir / "adapter_config.json");
  EXPECT_EQ(cfg["target_parameters"], Json({"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}));
  cfg["target_parameters"] = {"mlp.experts.gate_up_proj", "mlp.shared_expert.up_proj"};
  json_save_file(dir / "adapter_config.json", cfg);
  EXPECT_THROW(lora_load_peft(dir.str(), c.model), UnsupportedError);
}

TEST(PeftGolden, SavedAdapterRoundTripsRegexTargets) {
  Case c = load_case("qwen3moe_attn_dense");
  const LoraAdapter a = lora_load_peft((kRoot / c.name / "init_adapter").string(), c.model);
  test::TempDir dir;
  lora_save_peft(a, c.model, dir.str(), "base");
  const Json cfg = json_load_file(dir / "adapter_config.json");
  ASSERT_TRUE(cfg["target_modules"].is_string()) << cfg["target_modules"].dump();
  const LoraAdapter b = lora_load_peft(dir.str(), c.model);
  EXPECT_EQ(b.num_parameters(), a.num_parameters());
  expect_tensors(c, b, (kRoot / c.name / "init_adapter" / "adapter_model.safetensors").string(), false, 0.0);
}

TEST(PeftGolden, Qwen35AdaptersRoundTrip) {
  // PEFT's Qwen3.5 adapters (linear_attn and shared-expert modules under model.language_model.) load, save
  // and load again unchanged; the saved target_modules name the Gated DeltaNet projections.
  for (const char* name : {"qwen35_dense_all10", "qwen35moe_attn_gdn_shared"}) {
    Case c = load_case(name);
    const LoraAdapter a = lora_load_peft((kRoot / name / "init_adapter").string(), c.model);
    EXPECT_TRUE(a.layers[0][size_t(LoraTarget::LinQkv)].defined()) << name;
    EXPECT_FALSE(a.layers[0][size_t(LoraTarget::LinA)].defined()) << name;
    test::TempDir dir;
    lora_save_peft(a, c.model, dir.str(), "base");
    const std::string cfg = json_load_file(dir / "adapter_config.json")["target_modules"].dump();
    EXPECT_NE(cfg.find("in_proj_qkv"), std::string::npos) << cfg;
    const LoraAdapter b = lora_load_peft(dir.str(), c.model);
    EXPECT_EQ(b.num_parameters(), a.num_parameters()) << name;
    expect_tensors(c, b, (kRoot / name / "init_adapter" / "adapter_model.safetensors").string(), false, 0.0);
  }
}

}  // namespace tune
