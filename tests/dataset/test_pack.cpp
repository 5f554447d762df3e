// Tests of truncation, packing plans (best-fit decreasing, sequential, none), the row layout (positions and
// doc_start restart per document, targets shifted inside documents, padding as its own document), data set
// statistics, and the seeded epoch order with an exact resume. dataset_build runs on the real Qwen3
// tokenizer (.testdata/, bash scripts/fetch_testdata.sh) with pre-tokenized records.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/pack.h"
#include "test_util.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kTestData = TUNE_SOURCE_DIR "/.testdata";
constexpr int32_t X = kIgnoreIndex;

Example make(std::vector<int32_t> ids, std::vector<int32_t> labels) {
  return Example{std::move(ids), std::move(labels)};
}

TEST(Pack, TargetsAreShiftedInsideTheExample) {
  EXPECT_EQ(example_targets(make({10, 11, 12, 13}, {X, X, 12, 13})), (std::vector<int32_t>{X, 12, 13, X}));
  EXPECT_EQ(example_targets(make({10}, {10})), (std::vector<int32_t>{X}));
}

TEST(Pack, FitTruncatesDropsAndCounts) {
  std::vector<Example> ex = {
      make({1, 2, 3}, {X, 2, 3}),                    // fits
      make({1, 2, 3, 4, 5, 6}, {X, 2, 3, 4, 5, 6}),  // truncated to 4: still trained
      make({1, 2, 3, 4, 5, 6}, {X, X, X, X, 5, 6}),  // truncated to 4: nothing left to train
      make({1, 2}, {1, X}),                          // labels[0] is never a target: untrained
  };
  FitCounts c;
  examples_fit(ex, 4, /*drop_long=*/false, c);
  EXPECT_EQ(c.truncated, 2);
  EXPECT_EQ(c.dropped, 0);
  EXPECT_EQ(c.untrained, 2);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ex[1].ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(ex[1].labels, (std::vector<int32_t>{X, 2, 3, 4}));

  std::vector<Example> ex2 = {make({1, 2, 3}, {X, 2, 3}), make({1, 2, 3, 4, 5}, {X, 2, 3, 4, 5})};
  FitCounts c2;
  examples_fit(ex2, 4, /*drop_long=*/true, c2);
  EXPECT_EQ(c2.truncated, 0);
  EXPECT_EQ(c2.dropped, 1);
  ASSERT_EQ(ex2.size(), 1u);
  EXPECT_EQ(ex2[0].ids.size(), 3u);
}

TEST(Pack, PlanBestFitDecreasing) {
  // Longest first: 6 -> row0 (2 free), 5 -> row1 (3 free), 4 -> row2, 3 -> row1 (fits exactly), 2 -> row0.
  const std::vector<int64_t> lengths = {5, 3, 4, 2, 6};
  EXPECT_EQ(pack_plan(lengths, 8, PackMode::kBestFit),
            (std::vector<std::vector<int64_t>>{{4, 3}, {0, 1}, {2}}));
  // Best fit, not first fit: 3 goes to the row with 3 free (row1), not the first row with room (row0, 4
  // free).
  EXPECT_EQ(pack_plan(std::vector<int64_t>{4, 5, 3}, 8, PackMode::kBestFit),
            (std::vector<std::vector<int64_t>>{{1, 2}, {0}}));
}

TEST(Pack, PlanSequentialAndNone) {
  const std::vector<int64_t> lengths = {5, 3, 4, 2, 6};
  EXPECT_EQ(pack_plan(lengths, 8, PackMode::kSequential),
            (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4}}));
  EXPECT_EQ(pack_plan(lengths, 8, PackMode::kNone),
            (std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {3}, {4}}));
}

TEST(Pack, PlanIsCompleteAndFits) {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 500; ++i) lengths.push_back(1 + (i * 7919) % 97);
  for (PackMode mode : {PackMode::kBestFit, PackMode::kSequential, PackMode::kNone}) {
    const auto rows = pack_plan(lengths, 128, mode);
    std::multiset<int64_t> seen;
    for (const auto& row : rows) {
      int64_t used = 0;
      for (int64_t i : row) {
        used += lengths[i];
        seen.insert(i);
      }
      EXPECT_LE(used, 128);
    }
    EXPECT_EQ(seen.size(), lengths.size());
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), lengths.size());
  }
}

TEST(Pack, RowLayout) {
  const std::vector<Example> ex = {make({10, 11, 12}, {X, 11, 12}), make({20, 21}, {20, 21})};
  const std::vector<int64_t> docs = {1, 0};
  const Row r = row_build(ex, docs, 8, /*pad_id=*/0);
  EXPECT_EQ(r.input_ids, (std::vector<int32_t>{20, 21, 10, 11, 12, 0, 0, 0}));
  // Each document's last token has no target: 21 does not predict 10.
  EXPECT_EQ(r.targets, (std::vector<int32_t>{21, X, 11, 12, X, X, X, X}));
  EXPECT_EQ(r.position_ids, (std::vector<int32_t>{0, 1, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(r.doc_start, (std::vector<int32_t>{0, 0, 2, 2, 2, 5, 5, 5}));
  EXPECT_EQ(r.length, 5);
  EXPECT_EQ(r.num_docs, 2);
  EXPECT_EQ(r.trained_tokens(), 3);
  // A full row has no padding.
  const Row full = row_build(ex, std::vector<int64_t>{0, 1}, 5, 0);
  EXPECT_EQ(full.length, 5);
  EXPECT_EQ(full.doc_start, (std::vector<int32_t>{0, 0, 0, 3, 3}));
}

TEST(Pack, ModeNames) {
  for (PackMode m : {PackMode::kNone, PackMode::kSequential, PackMode::kBestFit})
    EXPECT_EQ(pack_mode_parse(pack_mode_name(m)), m);
  EXPECT_THROW(pack_mode_parse("ffd"), ConfigError);
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kTestData + "/qwen3/tokenizer.json"))
        << kTestData << "/qwen3 is missing: run `bash scripts/fetch_testdata.sh` first";
  }
  static const Tokenizer& tok() {
    static const Tokenizer t = Tokenizer::from_dir(kTestData + "/qwen3");
    return t;
  }
  test::TempDir dir_;
};

// Pre-tokenized records of the given lengths: ids 100.., all trained except the first token.
std::string tokens_file(const std::vector<int>& lengths) {
  std::string s;
  for (int n : lengths) {
    std::string ids, labels;
    for (int i = 0; i < n; ++i) {
      ids += (i ? "," : "") + std::to_string(100 + i);
      labels += (i ? "," + std::to_string(100 + i) : "-100");
    }
    s += R"({"input_ids":[)" + ids + R"(],"labels":[)" + labels + "]}\n";
  }
  return s;
}

TEST_F(DatasetTest, StatisticsAndRows) {
  test::write_text(dir_ / "a.jsonl", tokens_file({5, 3, 12, 4, 2}) + "{\"input_ids\": 5}\n");
  DatasetOptions o;
  o.seq_len = 8;
  o.skip_bad = true;
  const Dataset ds = dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
  const DataStats& s = ds.stats;
  EXPECT_EQ(s.records, 5);
  EXPECT_EQ(s.skipped, 1);
  EXPECT_EQ(s.truncated, 1);  // 12 -> 8
  EXPECT_EQ(s.dropped, 0);
  EXPECT_EQ(s.examples, 5);
  EXPECT_EQ(s.tokens, 5 + 3 + 8 + 4 + 2);
  // Targets: n - 1 per example (the first label is -100, the last token has no next token).
  EXPECT_EQ(s.trained_tokens, 4 + 2 + 7 + 3 + 1);
  // Best fit: 8 | 5+3 | 4+2.
  EXPECT_EQ(s.rows, 3);
  EXPECT_EQ(s.padding, 3 * 8 - s.tokens);
  ASSERT_EQ(s.sources.size(), 1u);
  EXPECT_EQ(s.sources[0].format, DataFormat::kTokens);
  EXPECT_EQ(s.skip_reasons.size(), 1u);
  int64_t trained = 0;
  for (int64_t i = 0; i < ds.num_rows(); ++i) {
    const Row r = ds.row(i);
    trained += r.trained_tokens();
    ASSERT_EQ(r.input_ids.size(), 8u);
    for (int t = 0; t < 8; ++t) {
      // The shift never crosses a document: a target at t belongs to t + 1 of the same document.
      if (r.targets[t] != X) {
        ASSERT_LT(t + 1, r.length);
        EXPECT_EQ(r.doc_start[t + 1], r.doc_start[t]);
        EXPECT_EQ(r.targets[t], r.input_ids[t + 1]);
      }
      EXPECT_EQ(r.position_ids[t], t - r.doc_start[t]);
    }
    for (int t = r.length; t < 8; ++t) EXPECT_EQ(r.input_ids[t], ds.pad_id);
  }
  EXPECT_EQ(trained, s.trained_tokens);
  EXPECT_EQ(ds.pad_id, tok().pad_id());

  o.drop_long = true;
  const Dataset dropped = dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
  EXPECT_EQ(dropped.stats.truncated, 0);
  EXPECT_EQ(dropped.stats.dropped, 1);
  EXPECT_EQ(dropped.stats.examples, 4);

  o.pack = PackMode::kNone;
  o.drop_long = false;
  const Dataset unpacked = dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
  EXPECT_EQ(unpacked.stats.rows, 5);
  EXPECT_EQ(unpacked.row(0).num_docs, 1);

  o.skip_bad = false;
  try {
    dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("a.jsonl:6: 'input_ids' must be an array"), std::string::npos)
        << e.what();
  }
}

TEST_F(DatasetTest, RenderErrorsAreReportedInFileOrder) {
  // Lines 2 and 4 parse but fail when rendered (ids outside the vocabulary): line 2 is the one named.
  test::write_text(dir_ / "a.jsonl", tokens_file({3}) + R"({"input_ids":[1,999999]})" + "\n" +
                                         tokens_file({3}) + R"({"input_ids":[1,999998]})" + "\n");
  DatasetOptions o;
  o.seq_len = 8;
  try {
    dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("a.jsonl:2: input_ids[1] = 999999"), std::string::npos) << e.what();
  }
  o.skip_bad = true;
  const Dataset ds = dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o);
  EXPECT_EQ(ds.stats.skipped, 2);
  EXPECT_EQ(ds.stats.examples, 2);
}

TEST_F(DatasetTest, BadOptions) {
  test::write_text(dir_ / "a.jsonl", tokens_file({3}));
  DatasetOptions o;
  o.seq_len = 1;
  EXPECT_THROW(dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o), ConfigError);
  EXPECT_THROW(dataset_build({}, tok(), nullptr, DatasetOptions{}), ConfigError);
  EXPECT_THROW(RowSampler(0, 1), ConfigError);
}

TEST(Epochs, OrderIsASeededPermutationPerEpoch) {
  const std::vector<int64_t> e0 = epoch_order(50, 7, 0), e1 = epoch_order(50, 7, 1);
  EXPECT_EQ(e0, epoch_order(50, 7, 0));
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, epoch_order(50, 8, 0));
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
}

TEST(Epochs, SamplerResumesExactly) {
  RowSampler full(7, 42);
  std::vector<int64_t> seen;
  DataCursor saved;
  for (int step = 0; step < 30; ++step) {
    if (step == 17) saved = full.cursor();
    seen.push_back(full.next());
  }
  EXPECT_EQ(std::vector<int64_t>(seen.begin(), seen.begin() + 7), epoch_order(7, 42, 0));
  EXPECT_EQ(std::vector<int64_t>(seen.begin() + 7, seen.begin() + 14), epoch_order(7, 42, 1));
  EXPECT_EQ(saved.epoch, 2);
  EXPECT_EQ(saved.index, 3);
  const uint64_t fp = 0x0123456789abcdefull;
  const Json j = data_cursor_to_json(saved, fp);
  EXPECT_EQ(j["fingerprint"], "0123456789abcdef");
  RowSampler resumed(7, 42, data_cursor_from_json(j, fp));
  for (int step = 17; step < 30; ++step) EXPECT_EQ(resumed.next(), seen[step]) << step;
  EXPECT_THROW(data_cursor_from_json(j, fp + 1), ConfigError);
  EXPECT_THROW(data_cursor_from_json(Json{{"epoch", 1}}, fp), FormatError);
  EXPECT_THROW(RowSampler(7, 42, DataCursor{0, 8}), ConfigError);
  // A cursor at the end of an epoch continues with the next one.
  RowSampler at_end(7, 42, DataCursor{0, 7});
  EXPECT_EQ(at_end.next(), epoch_order(7, 42, 1)[0]);
  EXPECT_EQ(at_end.cursor().epoch, 1);
}

TEST_F(DatasetTest, FingerprintFollowsTheData) {
  test::write_text(dir_ / "a.jsonl", tokens_file({3, 4}));
  test::write_text(dir_ / "b.jsonl", tokens_file({3, 5}));
  DatasetOptions o;
  o.seq_len = 8;
  const uint64_t a = dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o).fingerprint();
  EXPECT_EQ(a, dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o).fingerprint());
  EXPECT_NE(a, dataset_build({dir_ / "b.jsonl"}, tok(), nullptr, o).fingerprint());
  o.seq_len = 16;
  EXPECT_NE(a, dataset_build({dir_ / "a.jsonl"}, tok(), nullptr, o).fingerprint());
}

}  // namespace
}  // namespace tune
