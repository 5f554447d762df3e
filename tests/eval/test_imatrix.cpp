// Importance-matrix collection against sums of squares computed directly from the weights (a seeded one-layer
// MoE model whose attn_q and attn_output are zero, so every matmul input has a closed form: attention is a causal
// mean of v, the FFN sees the normed embedding, the router's top-k picks the experts), llama.cpp's chunking and
// 16-row rule, and the GGUF / legacy .dat file formats.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "eval/imatrix.h"
#include "io/gguf.h"
#include "io/json.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/names.h"
#include "test_util.h"

namespace tune {
namespace {

const char* kMoeConfig =
    R"({"model_type":"qwen3_moe","vocab_size":50,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,)"
    R"("num_key_value_heads":1,"head_dim":16,"intermediate_size":64,"moe_intermediate_size":24,"num_experts":4,)"
    R"("num_experts_per_tok":2,"norm_topk_prob":true,"rms_norm_eps":1e-6,"tie_word_embeddings":false,)"
    R"("max_position_embeddings":128,"rope_parameters":{"rope_type":"default","rope_theta":10000}})";

Model test_model() {
  Model m = model_random(model_config_from_json(json_parse(kMoeConfig, "config"), "config"), 7, 0.3f);
  LayerWeights& l = m.weights.layers[0];
  std::memset(l.attn_q.data(), 0, l.attn_q.nbytes());
  std::memset(l.attn_output.data(), 0, l.attn_output.nbytes());
  return m;
}

std::vector<int32_t> test_ids(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((i * 17 + 3) % 50));
  return ids;
}

// y (H) = rmsnorm(x) * w in double.
std::vector<double> rmsnorm(const float* x, const Tensor& w, int64_t H, double eps) {
  double ss = 0;
  for (int64_t j = 0; j < H; ++j) ss += double(x[j]) * x[j];
  const double inv = 1.0 / std::sqrt(ss / double(H) + eps);
  std::vector<double> y(static_cast<size_t>(H));
  for (int64_t j = 0; j < H; ++j) y[size_t(j)] = double(x[j]) * inv * double(w.f32()[j]);
  return y;
}

// out = W x for W (rows, cols) f32.
std::vector<double> matvec(const float* W, const std::vector<double>& x, int64_t rows) {
  const int64_t cols = int64_t(x.size());
  std::vector<double> y(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) y[size_t(r)] += double(W[r * cols + j]) * x[size_t(j)];
  return y;
}

struct Direct {
  std::map<std::string, std::vector<double>> sums;
  std::map<std::string, std::vector<int64_t>> counts;
  void add(const std::string& name, int64_t m, int64_t n_mat, const std::vector<double>& x) {
    auto& s = sums[name];
    auto& c = counts[name];
    if (s.empty()) {
      s.assign(size_t(n_mat) * x.size(), 0.0);
      c.assign(size_t(n_mat), 0);
    }
    for (size_t j = 0; j < x.size(); ++j) s[size_t(m) * x.size() + j] += x[j] * x[j];
    ++c[size_t(m)];
  }
};

// The sums each weight's input has, chunk by chunk (positions and the causal mean restart at each chunk).
Direct direct_sums(const Model& m, const std::vector<int32_t>& ids, int64_t n_ctx) {
  const ModelConfig& c = m.config;
  const LayerWeights& l = m.weights.layers[0];
  const int64_t H = c.hidden_size, hd = c.head_dim, nH = c.num_heads, E = c.num_experts, I = c.moe_intermediate_size;
  Direct d;
  for (size_t start = 0; start + size_t(n_ctx) <= ids.size(); start += size_t(n_ctx)) {
    std::vector<double> vsum(size_t(hd), 0.0);
    for (int64_t t = 0; t < n_ctx; ++t) {
      const float* emb = m.weights.token_embd.f32() + ids[start + size_t(t)] * H;
      const std::vector<double> h1 = rmsnorm(emb, l.attn_norm, H, c.rms_norm_eps);
      for (const char* w : {"attn_q", "attn_k", "attn_v"}) d.add(std::string("blk.0.") + w + ".weight", 0, 1, h1);
      // q = 0: every head averages v over the causal prefix; one KV head serves both query heads.
      const std::vector<double> v = matvec(l.attn_v.f32(), h1, hd);
      std::vector<double> o;
      for (int64_t j = 0; j < hd; ++j) vsum[size_t(j)] += v[size_t(j)];
      for (int64_t h = 0; h < nH; ++h)
        for (int64_t j = 0; j < hd; ++j) o.push_back(vsum[size_t(j)] / double(t + 1));
      d.add("blk.0.attn_output.weight", 0, 1, o);
      // attn_output = 0: the FFN norm sees the embedding itself.
      const std::vector<double> h2 = rmsnorm(emb, l.ffn_norm, H, c.rms_norm_eps);
      d.add("blk.0.ffn_gate_inp.weight", 0, 1, h2);
      const std::vector<double> logits = matvec(l.ffn_gate_inp.f32(), h2, E);
      std::vector<int64_t> order(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) order[size_t(e)] = e;
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
      for (int64_t k = 0; k < c.num_experts_per_tok; ++k) {
        const int64_t e = order[size_t(k)];
        d.add("blk.0.ffn_gate_exps.weight", e, E, h2);
        d.add("blk.0.ffn_up_exps.weight", e, E, h2);
        const std::vector<double> g = matvec(l.ffn_gate_exps.f32() + e * I * H, h2, I);
        const std::vector<double> u = matvec(l.ffn_up_exps.f32() + e * I * H, h2, I);
        std::vector<double> a(static_cast<size_t>(I));
        for (int64_t i = 0; i < I; ++i) a[size_t(i)] = g[size_t(i)] / (1.0 + std::exp(-g[size_t(i)])) * u[size_t(i)];
        d.add("blk.0.ffn_down_exps.weight", e, E, a);
      }
    }
  }
  return d;
}

TEST(Imatrix, EqualsDirectSumsOfSquares) {
  const Model m = test_model();
  const std::vector<int32_t> ids = test_ids(45);  // two chunks of 20; the last 5 tokens are dropped
  ImatrixOptions o;
  o.n_ctx = 20;
  o.dataset = "test.txt";
  int calls = 0;
  o.progress = [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 2);
    EXPECT_EQ(done, calls);
  };
  const Imatrix im = imatrix_collect(m, ids, o);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(im.chunk_count, 2);
  EXPECT_EQ(im.chunk_size, 20);
  EXPECT_EQ(im.datasets, std::vector<std::string>{"test.txt"});
  const Direct d = direct_sums(m, ids, 20);
  // Every block weight that multiplies something, nothing else (no token_embd, no output without --process-output).
  ASSERT_EQ(im.entries.size(), d.sums.size());
  for (const auto& [name, want] : d.sums) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(im.entries.count(name));
    const ImatrixEntry& e = im.entries.at(name);
    EXPECT_EQ(e.counts, d.counts.at(name));
    ASSERT_EQ(e.sums.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(e.sums[i], want[i], 1e-5 * (1.0 + want[i])) << i;  // f32 forward vs double
  }
  // Each token visits k experts.
  const auto& ec = im.entries.at("blk.0.ffn_gate_exps.weight").counts;
  EXPECT_EQ(ec.size(), 4u);
  int64_t visits = 0;
  for (int64_t n : ec) visits += n;
  EXPECT_EQ(visits, 40 * 2);
  EXPECT_EQ(im.entries.at("blk.0.attn_q.weight").counts, std::vector<int64_t>{40});
}

TEST(Imatrix, OutputOnRequestAndSmallChunksSkipDenseWeights) {
  const Model m = test_model();
  const std::vector<int32_t> ids = test_ids(40);
  ImatrixOptions o;
  o.n_ctx = 20;
  o.process_output = true;
  Imatrix im = imatrix_collect(m, ids, o);
  ASSERT_TRUE(im.entries.count("output.weight"));
  EXPECT_EQ(im.entries.at("output.weight").counts, std::vector<int64_t>{40});
  // Chunks of 10 rows: llama-imatrix ignores dense products under 16 rows; experts are always collected.
  o.n_ctx = 10;
  o.process_output = false;
  o.max_chunks = 3;
  im = imatrix_collect(m, ids, o);
  EXPECT_EQ(im.chunk_count, 3);
  EXPECT_FALSE(im.entries.count("blk.0.attn_q.weight"));
  EXPECT_FALSE(im.entries.count("blk.0.ffn_gate_inp.weight"));
  ASSERT_TRUE(im.entries.count("blk.0.ffn_down_exps.weight"));
  int64_t visits = 0;
  for (int64_t n : im.entries.at("blk.0.ffn_down_exps.weight").counts) visits += n;
  EXPECT_EQ(visits, 30 * 2);
  o.n_ctx = 41;
  EXPECT_THROW(imatrix_collect(m, ids, o), ConfigError);
}

TEST(Imatrix, GgufRoundTripInLlamaCppLayout) {
  test::TempDir tmp;
  const Model m = test_model();
  ImatrixOptions o;
  o.n_ctx = 20;
  o.dataset = "data.txt";
  const Imatrix im = imatrix_collect(m, test_ids(40), o);
  const std::string path = tmp / "imatrix.gguf";
  imatrix_save(im, path);

  // llama-imatrix's layout: no architecture, imatrix.* keys, <name>.in_sum2 {cols, n_mat} and <name>.counts
  // {1, n_mat} in F32, sorted by name.
  const GgufFile f(path);
  EXPECT_EQ(f.get_string("general.type"), "imatrix");
  EXPECT_EQ(f.find("general.architecture"), nullptr);
  EXPECT_EQ(f.get("imatrix.datasets").as_strings(), std::vector<std::string>{"data.txt"});
  EXPECT_EQ(f.get("imatrix.chunk_count").type(), GgufType::UINT32);
  EXPECT_EQ(f.get_int("imatrix.chunk_count"), 2);
  EXPECT_EQ(f.get_int("imatrix.chunk_size"), 20);
  // Pairs in weight-name order: in_sum2, then counts.
  std::vector<std::string> weights;
  ASSERT_EQ(f.tensors().size(), 2 * im.entries.size());
  for (size_t i = 0; i < f.tensors().size(); i += 2) {
    const std::string& a = f.tensors()[i].name;
    ASSERT_GT(a.size(), 8u);
    weights.push_back(a.substr(0, a.size() - 8));
    EXPECT_EQ(a, weights.back() + ".in_sum2");
    EXPECT_EQ(f.tensors()[i + 1].name, weights.back() + ".counts");
    EXPECT_EQ(f.tensors()[i].ggml_type, 0u);
    EXPECT_EQ(f.tensors()[i + 1].ggml_type, 0u);
  }
  EXPECT_TRUE(std::is_sorted(weights.begin(), weights.end()));
  const GgufTensorInfo* s = f.find_tensor("blk.0.ffn_up_exps.weight.in_sum2");
  const GgufTensorInfo* c = f.find_tensor("blk.0.ffn_up_exps.weight.counts");
  ASSERT_TRUE(s && c);
  EXPECT_EQ(s->ne, (std::vector<int64_t>{32, 4}));
  EXPECT_EQ(c->ne, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_output.weight.in_sum2")->ne, (std::vector<int64_t>{32, 1}));

  const Imatrix back = imatrix_load(path);
  EXPECT_FALSE(back.legacy);
  EXPECT_EQ(back.chunk_count, 2);
  EXPECT_EQ(back.chunk_size, 20);
  EXPECT_EQ(back.datasets, im.datasets);
  ASSERT_EQ(back.entries.size(), im.entries.size());
  for (const auto& [name, e] : im.entries) {
    const ImatrixEntry& b = back.entries.at(name);
    EXPECT_EQ(b.counts, e.counts) << name;
    EXPECT_EQ(b.cols, e.cols) << name;
    for (size_t i = 0; i < e.sums.size(); ++i) EXPECT_EQ(b.sums[i], double(float(e.sums[i]))) << name;
  }
  // Importance = in_sum2 / count per expert; an expert without tokens gets 1.
  const auto imp = imatrix_importance(back);
  const ImatrixEntry& up = back.entries.at("blk.0.ffn_up_exps.weight");
  for (int64_t mat = 0; mat < 4; ++mat)
    for (int64_t j = 0; j < 32; ++j) {
      const size_t i = size_t(mat * 32 + j);
      const float want = up.counts[size_t(mat)] > 0 ? float(up.sums[i]) / float(up.counts[size_t(mat)]) : 1.0f;
      EXPECT_EQ(imp.at("blk.0.ffn_up_exps.weight")[i], want);
    }
}

// Qwen3.5: entries under llama.cpp's names (attn_qkv, attn_gate, ...), and ssm_out's columns in llama.cpp's
// (tiled) value-head order, so llama-quantize applies each value to the column it belongs to.
TEST(Imatrix, Qwen35NamesAndValueHeadOrder) {
  const Model m = model_load(std::string(TUNE_TEST_DATA_DIR) + "/golden/qwen3_5_dense_nv4nk2_T75_untied");
  const std::vector<int32_t> ids = test_ids(32);
  std::vector<double> own(size_t(m.config.linear_num_value_heads * m.config.linear_value_head_dim), 0.0);
  ImatrixOptions o;
  o.n_ctx = 16;
  Imatrix im;
  {
    // An outer observer sees nothing while imatrix_collect's own scope is active; run it separately.
    LinearObserverScope scope([&](const Tensor& x, const Tensor& w) {
      if (w.data() != m.weights.layers[0].ssm_out.data()) return;
      for (int64_t r = 0; r < x.size(0); ++r)
        for (size_t j = 0; j < own.size(); ++j) own[j] += std::pow(double(x.f32()[r * int64_t(own.size()) + int64_t(j)]), 2);
    });
    for (int c = 0; c < 2; ++c) (void)model_logits(m, std::span<const int32_t>(ids).subspan(size_t(c * 16), 16));
  }
  im = imatrix_collect(m, ids, o);
  for (const char* n : {"blk.0.attn_qkv.weight", "blk.0.attn_gate.weight", "blk.0.ssm_alpha.weight",
                        "blk.0.ssm_beta.weight", "blk.0.ssm_out.weight", "blk.1.attn_q.weight", "blk.2.ffn_down.weight"})
    EXPECT_TRUE(im.entries.count(n)) << n;
  EXPECT_FALSE(im.entries.count("blk.0.ssm_qkv.weight"));
  const std::vector<int64_t> cols = gguf_column_order(m.config, "blk.0.ssm_out.weight");
  ASSERT_EQ(cols.size(), own.size());
  const ImatrixEntry& e = im.entries.at("blk.0.ssm_out.weight");
  for (size_t j = 0; j < own.size(); ++j) EXPECT_NEAR(e.sums[j], own[size_t(cols[j])], 1e-9 * (1 + own[j])) << j;
  EXPECT_NE(e.sums[8], own[8]);  // llama.cpp's head 1 is tune's head 2
}

// tune init --norm-spread S: lognormal norm weights with E[w²] = 1, so the imatrix's column energies spread far
// more than with the default norms near 1 (what makes an importance matrix worth having on a seeded model).
TEST(Imatrix, NormSpreadMakesColumnEnergiesUnequal) {
  test::TempDir tmp;
  const char* config =
      R"({"model_type":"qwen3","vocab_size":64,"hidden_size":256,"num_hidden_layers":2,"num_attention_heads":4,)"
      R"("num_key_value_heads":2,"head_dim":64,"intermediate_size":512,"rms_norm_eps":1e-6,)"
      R"("tie_word_embeddings":true,"max_position_embeddings":512})";
  test::write_text(tmp / "config.json", config);
  double ratio[2] = {0, 0};
  for (int spread = 0; spread < 2; ++spread) {
    const std::string dir = tmp / ("m" + std::to_string(spread));
    const auto r = test::run_tune("init --config " + tmp / "config.json" + " --out " + dir + " --seed 3 --dtype f32" +
                                  (spread ? " --norm-spread 0.5" : ""));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Model m = model_load(dir);
    if (spread) {
      double sum = 0;
      int64_t n = 0;
      for (const Tensor* t : {&m.weights.output_norm, &m.weights.layers[0].attn_norm, &m.weights.layers[0].ffn_norm,
                              &m.weights.layers[1].attn_norm, &m.weights.layers[1].ffn_norm})
        for (int64_t i = 0; i < t->numel(); ++i, ++n) sum += double(t->f32()[i]) * t->f32()[i];
      EXPECT_NEAR(sum / double(n), 1.0, 0.15);  // E[w²] = 1; the mean of 1280 has sd ~0.04
    }
    ImatrixOptions o;
    o.n_ctx = 64;
    std::vector<int32_t> ids;
    for (int i = 0; i < 128; ++i) ids.push_back(int32_t((i * 29 + 5) % 64));
    const Imatrix im = imatrix_collect(m, ids, o);
    const ImatrixEntry& e = im.entries.at("blk.1.attn_q.weight");
    ratio[spread] = *std::max_element(e.sums.begin(), e.sums.end()) / *std::min_element(e.sums.begin(), e.sums.end());
  }
  std::printf("column energy max/min: default norms %.1f, --norm-spread 0.5 %.1f\n", ratio[0], ratio[1]);
  EXPECT_GT(ratio[1], 10 * ratio[0]);
}

TEST(Imatrix, ZeroCountExpertGetsOne) {
  Imatrix im;
  im.chunk_count = 1;
  im.chunk_size = 4;
  im.entries["blk.0.ffn_down_exps.weight"] = {2, {4.0, 8.0, 5.0, 7.0}, {4, 0}};
  const auto imp = imatrix_importance(im);
  EXPECT_EQ(imp.at("blk.0.ffn_down_exps.weight"), (std::vector<float>{1.0f, 2.0f, 1.0f, 1.0f}));
}

// A legacy .dat (llama-imatrix --output-format dat): per entry the mean x² times ncall.
TEST(Imatrix, ReadsLegacyDat) {
  test::TempDir tmp;
  const std::string path = tmp / "imatrix.dat";
  {
    std::ofstream f(path, std::ios::binary);
    auto i32 = [&](int32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
    auto str = [&](const std::string& s) {
      i32(int32_t(s.size()));
      f.write(s.data(), std::streamsize(s.size()));
    };
    i32(2);
    str("blk.0.attn_q.weight");
    i32(3);  // ncall
    i32(2);
    for (float v : {3.0f, 6.0f}) f.write(reinterpret_cast<const char*>(&v), 4);
    str("blk.0.ffn_down.weight");
    i32(3);
    i32(1);
    const float v = 1.5f;
    f.write(reinterpret_cast<const char*>(&v), 4);
    i32(3);  // chunk count
    str("wiki.txt");
  }
  const Imatrix im = imatrix_load(path);
  EXPECT_TRUE(im.legacy);
  EXPECT_EQ(im.chunk_count, 3);
  EXPECT_EQ(im.datasets, std::vector<std::string>{"wiki.txt"});
  const auto imp = imatrix_importance(im);
  EXPECT_EQ(imp.at("blk.0.attn_q.weight"), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(imp.at("blk.0.ffn_down.weight"), (std::vector<float>{0.5f}));
}

TEST(Imatrix, MalformedFilesAreFormatErrors) {
  test::TempDir tmp;
  // .in_sum2 without .counts.
  {
    GgufWriter w;
    w.set("general.type", GgufValue::string("imatrix"));
    w.set("imatrix.datasets", GgufValue::strings({"x"}));
    w.set("imatrix.chunk_count", GgufValue::u32(1));
    w.set("imatrix.chunk_size", GgufValue::u32(8));
    w.add_tensor("blk.0.attn_q.weight.in_sum2", Tensor::zeros(DType::F32, {1, 8}));
    w.write(tmp / "a.gguf");
  }
  EXPECT_THROW(imatrix_load(tmp / "a.gguf"), FormatError);
  // No imatrix.* metadata: llama-quantize refuses it.
  {
    GgufWriter w;
    w.add_tensor("blk.0.attn_q.weight.in_sum2", Tensor::zeros(DType::F32, {1, 8}));
    w.add_tensor("blk.0.attn_q.weight.counts", Tensor::zeros(DType::F32, {1, 1}));
    w.write(tmp / "b.gguf");
  }
  EXPECT_THROW(imatrix_load(tmp / "b.gguf"), FormatError);
  test::write_text(tmp / "c.dat", std::string("\x01\x00\x00\x00\x05\x00", 6));
  EXPECT_THROW(imatrix_load(tmp / "c.dat"), FormatError);
  EXPECT_THROW(imatrix_load(tmp / "missing.gguf"), IoError);
}

}  // namespace
}  // namespace tune
