// Whole models against transformers: for every golden model under tests/data/golden (made by
// tools/reference/make_goldens.py), tune's logits match the reference (relative L2 <= 1e-5, fp32) and `tune info`
// reports transformers' parameter count.
#include <cmath>
#include <filesystem>
#include <map>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/model.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace tune {

namespace {

std::vector<fs::path> golden_dirs() {
  std::vector<fs::path> v;
  const fs::path root = fs::path(TUNE_TEST_DATA_DIR) / "golden";
  if (fs::exists(root))
    for (const auto& e : fs::directory_iterator(root))
      if (fs::exists(e.path() / "reference.safetensors")) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST(Golden, AtLeastFourModelsPerArchitecture) {
  std::map<std::string, int> count;
  for (const fs::path& d : golden_dirs()) ++count[json_load_file((d / "meta.json").string())["model_type"]];
  for (const char* arch : {"qwen2", "qwen3", "qwen3_moe"}) EXPECT_GE(count[arch], 4) << arch;
}

TEST(Golden, LogitsMatchTransformers) {
  for (const fs::path& d : golden_dirs()) {
    const Model m = model_load(d.string());
    if (m.config.has_mixer(MixerKind::GatedDeltaNet) || m.config.has_mixer(MixerKind::GatedAttention)) continue;
    const SafetensorsFile ref((d / "reference.safetensors").string());
    const Tensor ids_t = ref.entries().at("input_ids").tensor.to(DType::I32);
    const Tensor want = ref.entries().at("logits").tensor.to(DType::F32);
    const std::vector<int32_t> ids(ids_t.ptr<int32_t>(), ids_t.ptr<int32_t>() + ids_t.numel());
    const Tensor got = model_logits(m, ids);
    ASSERT_EQ(got.shape(), want.shape()) << d;
    double num = 0, den = 0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double diff = double(got.f32()[i]) - want.f32()[i];
      num += diff * diff;
      den += double(want.f32()[i]) * want.f32()[i];
    }
    const double rel = std::sqrt(num / den);
    EXPECT_LE(rel, 1e-5) << d.filename() << ": relative L2 error " << rel;
    std::printf("[golden] %-40s rel L2 %.3g\n", d.filename().c_str(), rel);
  }
}

TEST(Golden, InfoReportsTransformersParameterCount) {
  for (const fs::path& d : golden_dirs()) {
    const test::RunResult r = test::run_tune("info --json " + d.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Json info = Json::parse(r.output);
    const int64_t want = json_load_file((d / "meta.json").string())["num_parameters"];
    EXPECT_EQ(info["num_parameters"].get<int64_t>(), want) << d.filename();
    EXPECT_TRUE(info["unused_tensors"].empty()) << d.filename() << ": " << info["unused_tensors"].dump();
  }
}

}  // namespace tune
