// Quantizing with an importance matrix: tune export --imatrix and tune quantize --imatrix give, tensor for
// tensor, the bytes of the quantizer called with llama-quantize's importance (in_sum2 / counts, per expert for
// 3-D tensors); the imatrix changes the bytes; a size mismatch is a clear error; quantize.imatrix.* keys are
// written; tune imatrix runs end to end on a model with the real Qwen3 tokenizer.
#include <cstring>
#include <filesystem>

#include "eval/imatrix.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace tune {
namespace {

using test::run_tune;
using test::TempDir;

// 256-wide rows, so the k-quants apply without the 32-block fallbacks; MoE for the per-expert slices.
const char* kDense =
    R"({"model_type":"qwen3","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"head_dim":64,"intermediate_size":512,"rms_norm_eps":1e-6,"tie_word_embeddings":false,)"
    R"("max_position_embeddings":512,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";
const char* kMoe =
    R"({"model_type":"qwen3_moe","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":1,"head_dim":64,"intermediate_size":512,"moe_intermediate_size":256,"num_experts":4,)"
    R"("num_experts_per_tok":2,"norm_topk_prob":true,"rms_norm_eps":1e-6,"tie_word_embeddings":true,)"
    R"("max_position_embeddings":512,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";

std::vector<int32_t> ids(int n) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(int32_t((i * 37 + 11) % 300));
  return v;
}

// Writes a seeded model to tmp/model and its imatrix (64 tokens, chunks of 32) to tmp/imatrix.gguf.
void make_model_and_imatrix(const TempDir& tmp, const char* config) {
  test::write_text(tmp / "config.json", config);
  const auto r = run_tune("init --config " + tmp / "config.json" + " --out " + tmp / "model" + " --seed 5 --std 0.1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Model m = model_load(tmp / "model");
  ImatrixOptions o;
  o.n_ctx = 32;
  o.dataset = "synthetic";
  imatrix_save(imatrix_collect(m, ids(64), o), tmp / "imatrix.gguf");
}

// Every tensor of `gguf` against quantize_rows over the f32 source with the importance of its entry.
void expect_quantizer_bytes(const std::string& gguf, const std::string& f32_gguf,
                            const std::map<std::string, std::vector<float>>& imp, int* with_imatrix) {
  const GgufFile q(gguf), src(f32_gguf);
  for (const GgufTensorInfo& t : q.tensors()) {
    SCOPED_TRACE(t.name);
    if (!dtype_is_quantized(t.dtype) || t.shape.ndim < 2) continue;
    const Tensor w = src.tensor(t.name);
    ASSERT_EQ(w.dtype(), DType::F32);
    const int64_t cols = t.ne[0], n_mat = t.ne.size() == 3 ? t.ne[2] : 1;
    const int64_t rows = t.shape.numel() / cols / n_mat;
    auto it = imp.find(t.name);
    if (it != imp.end()) ++*with_imatrix;
    std::vector<uint8_t> want(t.nbytes);
    size_t off = 0;
    for (int64_t m = 0; m < n_mat; ++m)
      off += quantize_rows(t.dtype, w.f32() + m * rows * cols, want.data() + off, rows, cols,
                           it == imp.end() ? nullptr : it->second.data() + m * cols);
    ASSERT_EQ(off, t.nbytes);
    EXPECT_EQ(std::memcmp(q.tensor_data(t), want.data(), t.nbytes), 0);
  }
}

class GgufImatrix : public ::testing::TestWithParam<int> {};

TEST_P(GgufImatrix, ExportAndQuantizeUseTheImportance) {
  TempDir tmp;
  const bool moe = GetParam() == 1;
  make_model_and_imatrix(tmp, moe ? kMoe : kDense);
  const auto imp = imatrix_importance(imatrix_load(tmp / "imatrix.gguf"));
  const std::string model = tmp / "model", f32 = tmp / "f32.gguf";
  ASSERT_EQ(run_tune("export --model " + model + " --gguf F32 --out " + f32).exit_code, 0);
  for (const char* type : {"Q4_K_M", "Q3_K_M", "Q2_K", "Q6_K"}) {
    SCOPED_TRACE(type);
    const std::string out = tmp / (std::string(type) + ".gguf"), plain = tmp / (std::string(type) + "-plain.gguf"),
                      requant = tmp / (std::string(type) + "-requant.gguf");
    auto r = run_tune("export --model " + model + " --gguf " + type + " --imatrix " + tmp / "imatrix.gguf" +
                      " --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    int with = 0;
    expect_quantizer_bytes(out, f32, imp, &with);
    EXPECT_GE(with, 14) << "tensors quantized with an entry";
    // Without the imatrix the bytes differ.
    ASSERT_EQ(run_tune("export --model " + model + " --gguf " + type + " --out " + plain).exit_code, 0);
    const GgufFile a(out), b(plain);
    const GgufTensorInfo* qa = a.find_tensor("blk.0.ffn_up" + std::string(moe ? "_exps" : "") + ".weight");
    const GgufTensorInfo* qb = b.find_tensor(qa->name);
    ASSERT_EQ(qa->nbytes, qb->nbytes);
    EXPECT_NE(std::memcmp(a.tensor_data(*qa), b.tensor_data(*qb), qa->nbytes), 0);
    EXPECT_EQ(a.get_string("quantize.imatrix.file"), tmp / "imatrix.gguf");
    EXPECT_EQ(a.get_string("quantize.imatrix.dataset"), "synthetic");
    EXPECT_EQ(a.get_int("quantize.imatrix.entries_count"), int64_t(imp.size()));
    EXPECT_EQ(a.get_int("quantize.imatrix.chunks_count"), 2);
    EXPECT_EQ(b.find("quantize.imatrix.file"), nullptr);
    // tune quantize --imatrix from the F32 file: the same file.
    r = run_tune("quantize " + f32 + " " + requant + " " + type + " --imatrix " + tmp / "imatrix.gguf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const GgufFile c(requant);
    ASSERT_EQ(c.tensors().size(), a.tensors().size());
    for (size_t i = 0; i < a.tensors().size(); ++i) {
      const GgufTensorInfo& x = a.tensors()[i];
      const GgufTensorInfo& y = c.tensors()[i];
      ASSERT_EQ(x.name, y.name);
      ASSERT_EQ(x.ggml_type, y.ggml_type) << x.name;
      EXPECT_EQ(std::memcmp(a.tensor_data(x), c.tensor_data(y), x.nbytes), 0) << x.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeded, GgufImatrix, ::testing::Values(0, 1),
                         [](const auto& info) { return std::string(info.param ? "qwen3moe" : "qwen3"); });

// Qwen3.5: the imatrix's llama.cpp names and value-head column order meet the exported tensors (reordered the same
// way), in export and in quantize.
TEST(GgufImatrixQwen35, ExportAndQuantize) {
  TempDir tmp;
  const std::string model = std::string(TUNE_TEST_DATA_DIR) + "/golden/qwen3_5moe_e4_top2_nv2nk1_T67";
  const Model m = model_load(model);
  ImatrixOptions o;
  o.n_ctx = 32;
  std::vector<int32_t> text = ids(64);
  for (int32_t& t : text) t %= int32_t(m.config.vocab_size);
  imatrix_save(imatrix_collect(m, text, o), tmp / "im.gguf");
  const auto imp = imatrix_importance(imatrix_load(tmp / "im.gguf"));
  ASSERT_EQ(run_tune("export --model " + model + " --gguf F32 --out " + tmp / "f32.gguf").exit_code, 0);
  auto r = run_tune("export --model " + model + " --gguf Q4_K_M --imatrix " + tmp / "im.gguf" + " --out " +
                    tmp / "q.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int with = 0;
  expect_quantizer_bytes(tmp / "q.gguf", tmp / "f32.gguf", imp, &with);
  EXPECT_GE(with, 10);
  r = run_tune("quantize " + tmp / "f32.gguf" + " " + tmp / "r.gguf" + " Q4_K_M --imatrix " + tmp / "im.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  with = 0;
  expect_quantizer_bytes(tmp / "r.gguf", tmp / "f32.gguf", imp, &with);
  EXPECT_GE(with, 10);
}

TEST(GgufImatrixErrors, SizeMismatchMissingEntriesAndJunk) {
  TempDir tmp;
  make_model_and_imatrix(tmp, kDense);
  const std::string model = tmp / "model";
  // An entry of the wrong size: llama-quantize aborts, so does tune.
  Imatrix im = imatrix_load(tmp / "imatrix.gguf");
  im.entries["blk.1.ffn_down.weight"].sums.resize(100, 1.0);
  im.entries["blk.1.ffn_down.weight"].cols = 100;
  imatrix_save(im, tmp / "bad.gguf");
  auto r = run_tune("export --model " + model + " --gguf Q4_K_M --imatrix " + tmp / "bad.gguf" + " --out " +
                    tmp / "x.gguf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("blk.1.ffn_down.weight"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
  // Missing entries: quantized without importance, said in the progress line.
  im = imatrix_load(tmp / "imatrix.gguf");
  im.entries.erase("blk.0.attn_q.weight");
  imatrix_save(im, tmp / "partial.gguf");
  r = run_tune("export --model " + model + " --gguf Q4_K_M --imatrix " + tmp / "partial.gguf" + " --out " +
               tmp / "p.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.0.attn_q.weight [256, 256] -> q4_k (no imatrix entry)"), std::string::npos)
      << r.output;
  ASSERT_EQ(run_tune("export --model " + model + " --gguf F32 --out " + tmp / "f32.gguf").exit_code, 0);
  int with = 0;
  expect_quantizer_bytes(tmp / "p.gguf", tmp / "f32.gguf", imatrix_importance(im), &with);
  EXPECT_GT(with, 0);
  // Not an imatrix at all.
  test::write_text(tmp / "junk.dat", "junk");
  r = run_tune("export --model " + model + " --gguf Q4_K_M --imatrix " + tmp / "junk.dat" + " --out " +
               tmp / "j.gguf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// tune imatrix over a text with the real Qwen3 vocabulary, then export with it.
TEST(GgufImatrixCli, ImatrixVerbEndToEnd) {
  const std::string tok_dir = std::string(TUNE_SOURCE_DIR) + "/.testdata/qwen3";
  if (!fs::exists(tok_dir + "/tokenizer.json")) GTEST_SKIP() << "no Qwen3 tokenizer under .testdata/qwen3";
  TempDir tmp;
  const std::string dir = tmp / "model";
  auto r = run_tune("init --preset tiny-qwen3 --out " + dir + " --seed 2 --dtype f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(tok_dir + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  const std::string text = read_file(std::string(TUNE_SOURCE_DIR) + "/README.md");
  test::write_text(tmp / "text.txt", text);
  r = run_tune("imatrix --model " + dir + " --data " + tmp / "text.txt" + " --out " + tmp / "im.gguf" +
               " --ctx 64 --chunks 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chunk 3/3"), std::string::npos) << r.output;
  const Imatrix im = imatrix_load(tmp / "im.gguf");
  EXPECT_EQ(im.chunk_count, 3);
  EXPECT_EQ(im.chunk_size, 64);
  EXPECT_EQ(im.datasets, std::vector<std::string>{tmp / "text.txt"});
  EXPECT_EQ(im.entries.size(), size_t(4 * 7));  // 4 layers x (q, k, v, o, gate, up, down); tied output excluded
  EXPECT_EQ(im.entries.at("blk.3.ffn_down.weight").counts, std::vector<int64_t>{192});
  r = run_tune("export --model " + dir + " --gguf Q4_K_M --imatrix " + tmp / "im.gguf" + " --out " +
               tmp / "q.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.0.ffn_down.weight [128, 384] -> q5_0 (imatrix)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tune
