// Independent check of the GGUF export and of tune's inference engine with llama.cpp (node-llama-cpp's prebuilt
// CPU build, installed by scripts/fetch_llama_node.sh under .testdata/node): for golden models of qwen2, qwen3 and
// qwen3moe exported as F16, Q8_0 and Q4_K_M, and seeded 256-wide models in every file type, llama.cpp's
// next-token probabilities on the same ids must match those of tune's engine over the same GGUF (matrices kept in
// their file types; infer/engine.h) within 1e-3 at every compared position; llama.cpp's tokenization of a text
// must equal tune's for a model with the real Qwen3 vocabulary. Skips when node or the npm package is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "export/gguf_export.h"
#include "infer/engine.h"
#include "io/gguf.h"
#include "model/forward.h"
#include "model/model_gguf.h"
#include "test_util.h"
#include "model/lora_peft.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_gguf.h"

namespace fs = std::filesystem;
using tune::test::run_tune;
using tune::test::TempDir;

namespace {

const std::string kNodeDir = std::string(TUNE_SOURCE_DIR) + "/.testdata/node";
const std::string kScript = std::string(TUNE_SOURCE_DIR) + "/tests/gguf/llama_probs.mjs";

bool have_llama() {
  return fs::exists(kNodeDir + "/node_modules/node-llama-cpp/dist/index.js") &&
         fs::exists(kNodeDir + "/node_modules/@node-llama-cpp/linux-x64") && std::system("node --version >/dev/null 2>&1") == 0;
}

std::string run(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *rc = -1;
    return out;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

nlohmann::json llama(const std::string& args) {
  int rc = 0;
  const std::string out = run("NODE_LLAMA_DIR='" + kNodeDir + "' node '" + kScript + "' " + args + " 2>/dev/null", &rc);
  EXPECT_EQ(rc, 0) << "llama_probs.mjs " << args << ":\n" << out;
  if (rc != 0) return {};
  return nlohmann::json::parse(out);
}

#define SKIP_WITHOUT_LLAMA()                                                                        \
  if (!have_llama()) GTEST_SKIP() << "node-llama-cpp not installed: run scripts/fetch_llama_node.sh"

// tune's forward over the GGUF vs llama.cpp on the same ids, over the last `last` positions.
struct Gap {
  double max_dp = 0, median_dp = 0;  // max |Δp| over positions and vocab; median over positions of the per-position max
  double max_dlogit = 0;           // max |Δlogit| (llama.cpp's raw logits vs tune's)
  std::vector<std::vector<float>> tune_logits;  // [last][V]
};

// llama.cpp's positions for `ids` (the last `last`), or null after a failure.
nlohmann::json llama_positions(const std::string& gguf, const std::vector<int32_t>& ids, int last) {
  std::string ids_arg;
  for (int32_t x : ids) ids_arg += std::to_string(x) + " ";
  const nlohmann::json j = llama("'" + gguf + "' --ids '" + ids_arg + "' --last " + std::to_string(last));
  if (j.is_null() || j["positions"].size() != size_t(last)) {
    ADD_FAILURE() << gguf << ": no llama.cpp output";
    return nullptr;
  }
  return j;
}

// tune over the GGUF against llama.cpp's output `j`: with `engine` the inference engine over the matrices kept in
// the file's types (what tune logits and tune generate run), otherwise the f32 reference forward over the
// dequantized weights (printed for comparison).
Gap compare(const std::string& gguf, const std::vector<int32_t>& ids, int last, const nlohmann::json& j,
            bool engine) {
  Gap g;
  if (j.is_null()) return g;
  const tune::Model m = tune::model_load_gguf(gguf, engine);
  const int64_t V = m.config.vocab_size;
  tune::Tensor logits;
  if (engine) {
    tune::Engine engine(m);
    const tune::Tensor tail = engine.forward(ids, last);
    logits = tune::Tensor::zeros(tune::DType::F32, {int64_t(ids.size()), V});
    std::memcpy(logits.f32() + (int64_t(ids.size()) - last) * V, tail.f32(), tail.nbytes());
  } else {
    logits = tune::model_logits(m, ids);
  }
  std::vector<double> per_pos;
  for (int k = 0; k < last; ++k) {
    const int64_t t = int64_t(ids.size()) - last + k;
    const float* row = logits.f32() + t * V;
    g.tune_logits.emplace_back(row, row + V);
    double mx = row[0];
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    const auto& pos = j["positions"][size_t(k)];
    EXPECT_EQ(pos["pos"].get<int64_t>(), t);
    const auto& probs = pos["probs"];
    const auto& ll = pos["logits"];
    EXPECT_LE(int64_t(probs.size()), V);
    double pos_max = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double ours = std::exp(double(row[v]) - mx) / sum;
      const double theirs = v < int64_t(probs.size()) ? probs[size_t(v)].get<double>() : 0.0;
      pos_max = std::max(pos_max, std::fabs(ours - theirs));
      if (v < int64_t(ll.size()) && !ll[size_t(v)].is_null())
        g.max_dlogit = std::max(g.max_dlogit, std::fabs(double(row[v]) - ll[size_t(v)].get<double>()));
    }
    g.max_dp = std::max(g.max_dp, pos_max);
    per_pos.push_back(pos_max);
  }
  std::sort(per_pos.begin(), per_pos.end());
  g.median_dp = per_pos.size() % 2 ? per_pos[per_pos.size() / 2]
                                   : 0.5 * (per_pos[per_pos.size() / 2 - 1] + per_pos[per_pos.size() / 2]);
  return g;
}

std::vector<int32_t> test_ids(int64_t V) {
  std::vector<int32_t> ids;
  for (int32_t x : {1, 5, 9, 33, 64, 17, 42, 99, 3, 77, 12, 50}) ids.push_back(int32_t(x % V));
  return ids;
}

// The engine computes as llama.cpp's CPU backend does on this kind of machine (an AVX512-VNNI/AMX Xeon, where
// node-llama-cpp loads its "sapphirerapids" ggml-cpu build): activations quantized per row to Q8_0 / Q8_K exactly as
// ggml does, integer block sums, the float steps of the kernel ggml picks for each matrix (AMX path, interleaved
// MoE kernels, AVX2 vec_dot; quant/dot_fast.h), and its f16 KV cache with flash attention (infer/attention.h,
// flash attention is on: node-llama-cpp asks for llama.cpp's "auto", which enables it on the CPU). Quantized
// files then agree to ~1e-7 in probability, F16 and F32 ones to 3e-4 or better (llama.cpp multiplies f32
// weights, and the f16 weights of MoE experts, in orders not reproduced); every file is held to 1e-3 at every
// compared position.
constexpr double kBound = 1e-3;

void expect_close(const Gap& q, const Gap& deq, const std::string& what) {
  std::printf("%-40s engine: max|dp| %.2e median %.2e max|dlogit| %.4f | f32 reference: max|dp| %.2e\n",
              what.c_str(), q.max_dp, q.median_dp, q.max_dlogit, deq.max_dp);
  EXPECT_LE(q.max_dp, kBound) << what;
}

class LlamaProbs : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaProbs, NextTokenProbabilitiesMatch) {
  SKIP_WITHOUT_LLAMA();
  const std::string dir = std::string(TUNE_TEST_DATA_DIR) + "/golden/" + GetParam();
  TempDir tmp;
  for (const char* type : {"F16", "Q8_0", "Q4_K_M"}) {
    const std::string gguf = tmp / (std::string(type) + ".gguf");
    const auto r = run_tune("export --model " + dir + " --gguf " + type + " --out " + gguf);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const tune::ModelConfig c = tune::model_config_from_gguf(gguf);
    const auto ids = test_ids(c.vocab_size);
    const nlohmann::json j = llama_positions(gguf, ids, 4);
    expect_close(compare(gguf, ids, 4, j, true), compare(gguf, ids, 4, j, false), std::string(GetParam()) + " " + type);
  }
}

// llama.cpp's qwen3moe always renormalizes the top-k weights, so only norm_topk_prob models are compared, and it
// has no dense layers, so the "mixed"/"sparse2" goldens have no llama.cpp counterpart.
INSTANTIATE_TEST_SUITE_P(Golden, LlamaProbs,
                         ::testing::Values("qwen2_gqa2_untied_sharded", "qwen2_gqa4_hd16_tied",
                                           "qwen2_gqa3_odd_untied_eps1e-5", "qwen3_gqa4_hd24_untied",
                                           "qwen3_mha_hd16_tied", "qwen3_gqa2_odd_untied_sharded",
                                           "qwen3moe_e4_top1_norm_tied", "qwen3moe_e8_top2_norm_untied_sharded"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

// The golden models are too narrow for k-quant blocks (every row falls back to Q5_0/Q5_1/Q8_0/F16), so seeded
// models with 256-wide rows check the k-quant layouts: every file type, llama.cpp vs tune.
const char* kKQuantDense =
    R"({"model_type":"qwen3","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"head_dim":64,"intermediate_size":512,"rms_norm_eps":1e-6,"tie_word_embeddings":false,)"
    R"("max_position_embeddings":512,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";
const char* kKQuantMoe =
    R"({"model_type":"qwen3_moe","vocab_size":300,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":1,"head_dim":64,"intermediate_size":512,"moe_intermediate_size":256,"num_experts":4,)"
    R"("num_experts_per_tok":2,"norm_topk_prob":true,"rms_norm_eps":1e-6,"tie_word_embeddings":true,)"
    R"("max_position_embeddings":512,"rope_parameters":{"rope_type":"default","rope_theta":1000000}})";

class LlamaKQuants : public ::testing::TestWithParam<int> {};

TEST_P(LlamaKQuants, EveryFileType) {
  SKIP_WITHOUT_LLAMA();
  TempDir tmp;
  const bool moe = GetParam() == 1;
  tune::test::write_text(tmp / "config.json", moe ? kKQuantMoe : kKQuantDense);
  const std::string dir = tmp / "model";
  auto r = run_tune("init --config " + tmp / "config.json" + " --out " + dir + " --seed 3 --std 0.1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::vector<float>> f32_logits;
  for (const char* type : {"F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"}) {
    const std::string gguf = tmp / (std::string(type) + ".gguf");
    r = run_tune("export --model " + dir + " --gguf " + type + " --out " + gguf);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string t = type;
    const auto ids = test_ids(300);
    const nlohmann::json j = llama_positions(gguf, ids, 4);
    const Gap g = compare(gguf, ids, 4, j, true);
    expect_close(g, compare(gguf, ids, 4, j, false), std::string(moe ? "kquant-moe " : "kquant-dense ") + type);
    if (t == "F32") f32_logits = g.tune_logits;
    if (t == "Q4_K_M" || t == "Q3_K_M" || t == "Q2_K") {
      // Decoding parity: the quantization error (tune Q vs tune F32) dwarfs the llama.cpp-vs-tune gap.
      double qerr = 0;
      for (size_t k = 0; k < g.tune_logits.size(); ++k)
        for (size_t v = 0; v < g.tune_logits[k].size(); ++v)
          qerr = std::max(qerr, double(std::fabs(g.tune_logits[k][v] - f32_logits[k][v])));
      std::printf("%-52s quantization error max|dlogit| %.3f\n", "", qerr);
      EXPECT_LT(g.max_dlogit, 0.25 * qerr) << type;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeded, LlamaKQuants, ::testing::Values(0, 1),
                         [](const auto& info) { return std::string(info.param ? "qwen3moe" : "qwen3"); });

// tune quantize from an F32 GGUF gives the same file as exporting the type directly; quantized input below Q8_0
// is refused without --allow-requantize.
TEST(GgufQuantize, MatchesDirectExport) {
  TempDir tmp;
  const std::string dir = tmp / "model";
  tune::test::write_text(tmp / "config.json", kKQuantDense);
  auto r = run_tune("init --config " + tmp / "config.json" + " --out " + dir + " --seed 4 --std 0.1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(run_tune("export --model " + dir + " --gguf F32 --out " + tmp / "f32.gguf").exit_code, 0);
  ASSERT_EQ(run_tune("export --model " + dir + " --gguf Q4_K_M --out " + tmp / "direct.gguf").exit_code, 0);
  r = run_tune("quantize " + tmp / "f32.gguf" + " " + tmp / "requant.gguf" + " Q4_K_M");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const tune::GgufFile a(tmp / "direct.gguf"), b(tmp / "requant.gguf");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& x = a.tensors()[i];
    const auto& y = b.tensors()[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.ggml_type, y.ggml_type) << x.name;
    ASSERT_EQ(x.nbytes, y.nbytes) << x.name;
    EXPECT_EQ(std::memcmp(a.tensor_data(x), b.tensor_data(y), x.nbytes), 0) << x.name;
  }
  EXPECT_EQ(a.get_int("general.file_type"), 15);
  EXPECT_EQ(b.get_int("general.file_type"), 15);
  r = run_tune("quantize " + tmp / "direct.gguf" + " " + tmp / "again.gguf" + " Q2_K");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--allow-requantize"), std::string::npos) << r.output;
  // tune logits reads GGUF files: by default through the engine (llama.cpp's arithmetic), with --dequantize in f32
  // over the dequantized weights; the two differ by the activation quantization and the f16 KV cache.
  r = run_tune("logits --model " + tmp / "direct.gguf" + " --ids '1 2 3' --top 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto rd = run_tune("logits --model " + tmp / "direct.gguf" + " --dequantize --ids '1 2 3' --top 1");
  EXPECT_EQ(rd.exit_code, 0) << rd.output;
  EXPECT_NE(r.output, rd.output);
  // Training refuses weights kept quantized.
  const tune::Model kept = tune::model_load_gguf(tmp / "direct.gguf", true);
  EXPECT_NE(kept.weights.layers[0].attn_q.dtype(), tune::DType::F32);
  EXPECT_EQ(kept.weights.token_embd.dtype(), tune::DType::F32);
  const std::vector<int32_t> ids = {1, 2, 3}, targets = {2, 3, 4};
  tune::TokenRow row;
  row.ids = ids;
  EXPECT_THROW(tune::model_loss_row(kept, nullptr, row, targets, 1.0f, nullptr), tune::UnsupportedError);
}

// export --adapter merges the PEFT adapter in f32: the F32 GGUF's logits equal the base model + adapter's.
TEST(GgufExport, AdapterMergedInF32) {
  TempDir tmp;
  for (const char* name : {"qwen3_all7", "qwen2_all7_rslora"}) {
    const std::string adapter = std::string(TUNE_TEST_DATA_DIR) + "/lora/" + name + "/final_adapter";
    const std::string base = std::string(TUNE_SOURCE_DIR) + "/" +
                             nlohmann::json::parse(std::ifstream(adapter + "/adapter_config.json"))
                                 .at("base_model_name_or_path")
                                 .get<std::string>();
    const std::string gguf = tmp / (std::string(name) + ".gguf");
    const auto r = run_tune("export --model " + base + " --adapter " + adapter + " --gguf F32 --out " + gguf);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const tune::Model merged = tune::model_load_gguf(gguf);
    const tune::Model m = tune::model_load(base);
    const tune::LoraAdapter ad = tune::lora_load_peft(adapter, m);
    const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7};
    const tune::Tensor a = tune::model_logits(merged, ids), b = tune::model_logits(m, ids, &ad);
    ASSERT_EQ(a.numel(), b.numel());
    double md = 0;
    for (int64_t i = 0; i < a.numel(); ++i) md = std::max(md, double(std::fabs(a.f32()[i] - b.f32()[i])));
    EXPECT_LT(md, 1e-4) << name;
  }
}

// llama.cpp's per-tensor types (llama_tensor_get_type) on a 28-layer shape: the use_more_bits layers of Q4_K_M.
TEST(GgufTypes, Q4KMMix) {
  tune::ModelConfig c;
  c.arch = tune::Arch::Qwen3;
  c.num_layers = 28;
  c.num_heads = 16;
  c.num_kv_heads = 8;
  c.tie_word_embeddings = true;
  tune::GgufTypeCounters n;
  std::vector<int> q6;
  for (int l = 0; l < 28; ++l) {
    const tune::DType t = tune::gguf_tensor_type(tune::GgufFileType::Q4_K_M, c,
                                                 "blk." + std::to_string(l) + ".attn_v.weight", {1024, 1024}, n);
    if (t == tune::DType::Q6_K) q6.push_back(l);
    else EXPECT_EQ(t, tune::DType::Q4_K);
  }
  EXPECT_EQ(q6, (std::vector<int>{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27}));
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q4_K_M, c, "token_embd.weight", {151936, 1024}, n),
            tune::DType::Q6_K);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q4_K_M, c, "token_embd.weight", {151936, 896}, n),
            tune::DType::Q8_0);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q4_K_M, c, "blk.0.attn_q.weight", {896, 896}, n),
            tune::DType::Q5_0);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q2_K, c, "blk.0.attn_q.weight", {896, 896}, n),
            tune::DType::Q4_0);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q5_K_M, c, "blk.0.attn_q.weight", {896, 896}, n),
            tune::DType::Q5_1);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q4_K_M, c, "blk.0.attn_q.weight", {48, 48}, n),
            tune::DType::F16);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::Q8_0, c, "blk.0.attn_norm.weight", {1024}, n),
            tune::DType::F32);
  EXPECT_EQ(tune::gguf_tensor_type(tune::GgufFileType::F16, c, "blk.0.attn_q.weight", {1024, 1024}, n),
            tune::DType::F16);
}

TEST(LlamaTokenize, MatchesTuneOnQwen3Vocabulary) {
  SKIP_WITHOUT_LLAMA();
  const std::string tok_dir = std::string(TUNE_SOURCE_DIR) + "/.testdata/qwen3";
  if (!fs::exists(tok_dir + "/tokenizer.json")) GTEST_SKIP() << "no Qwen3 tokenizer under .testdata/qwen3";
  TempDir tmp;
  const std::string dir = tmp / "model";
  auto r = run_tune("init --preset tiny-qwen3 --out " + dir + " --seed 1 --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(tok_dir + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  const std::string gguf = tmp / "m.gguf";
  r = run_tune("export --model " + dir + " --gguf Q8_0 --out " + gguf);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Metadata llama.cpp relies on.
  const tune::GgufFile f(gguf);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
  EXPECT_EQ(f.get("tokenizer.ggml.tokens").size(), size_t(151936));
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 151645);
  EXPECT_EQ(f.get_int("tokenizer.ggml.padding_token_id"), 151643);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 151643);
  const auto types = f.get("tokenizer.ggml.token_type").as_ints();
  EXPECT_EQ(types[151644], 3);  // <|im_start|>
  EXPECT_EQ(types[151667], 4);  // <think>
  EXPECT_EQ(types[151700], 4);  // [PAD151700]
  EXPECT_EQ(types[9707], 1);
  EXPECT_FALSE(f.get_string("tokenizer.chat_template").empty());

  const tune::Tokenizer tok = tune::Tokenizer::from_dir(dir);
  const tune::Tokenizer from_gguf = tune::tokenizer_from_gguf(gguf);  // the GGUF's own vocabulary, read back
  EXPECT_EQ(from_gguf.eos_id(), 151645);
  EXPECT_EQ(from_gguf.pad_id(), 151643);
  for (const std::string& text :
       {std::string("Hello, world! The quick brown fox jumps over 12345 lazy dogs."),
        std::string("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        std::string("  tabs\tand\n\nnewlines   ünïcödé 日本語 🙂 ied 4 ½ months")}) {
    const nlohmann::json j = llama("'" + gguf + "' --text '" + text + "'");
    ASSERT_FALSE(j.is_null());
    const std::vector<int32_t> theirs = j["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), theirs) << text;
    EXPECT_EQ(from_gguf.encode(text), theirs) << text;
  }
}

}  // namespace
