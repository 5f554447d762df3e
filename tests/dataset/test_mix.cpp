// Tests of replay mixing: --mix parsing, exact counts for given fractions, seeded sampling with even repeats
// for small files, and the interleaved data set (exact per-source counts, deterministic by seed).
// dataset_build runs on the real Qwen3 tokenizer (.testdata/, bash scripts/fetch_testdata.sh) with
// pre-tokenized records.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/mix.h"
#include "test_util.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kTestData = TUNE_SOURCE_DIR "/.testdata";

TEST(Mix, SpecParse) {
  const MixSpec m = mix_spec_parse("replay.jsonl:0.25");
  EXPECT_EQ(m.path, "replay.jsonl");
  EXPECT_DOUBLE_EQ(m.fraction, 0.25);
  EXPECT_EQ(mix_spec_parse("C:/data/r.jsonl:0.5").path, "C:/data/r.jsonl");  // split at the last ':'
  EXPECT_THROW(mix_spec_parse("replay.jsonl"), ConfigError);
  EXPECT_THROW(mix_spec_parse("replay.jsonl:x"), ConfigError);
  EXPECT_THROW(mix_spec_parse("replay.jsonl:0.1x"), ConfigError);
  EXPECT_THROW(mix_spec_parse("replay.jsonl:0"), ConfigError);
  EXPECT_THROW(mix_spec_parse("replay.jsonl:1"), ConfigError);
  EXPECT_THROW(mix_spec_parse(":0.5"), ConfigError);
}

TEST(Mix, CountsAreSharesOfTheTotal) {
  EXPECT_EQ(mix_counts(90, {0.1}), (std::vector<int64_t>{10}));           // 90 + 10 = 100, 10%
  EXPECT_EQ(mix_counts(70, {0.2, 0.1}), (std::vector<int64_t>{20, 10}));  // 70 + 20 + 10 = 100
  EXPECT_EQ(mix_counts(1000, {0.5}), (std::vector<int64_t>{1000}));
  EXPECT_EQ(mix_counts(7, {0.3}), (std::vector<int64_t>{3}));  // 7 / 0.7 = 10 -> 3
  EXPECT_EQ(mix_counts(0, {0.3}), (std::vector<int64_t>{0}));
  EXPECT_THROW(mix_counts(10, {0.6, 0.4}), ConfigError);
  EXPECT_THROW(mix_counts(10, {1.5}), ConfigError);
}

TEST(Mix, SampleWithoutAndWithRepeats) {
  Rng a(5), b(5), c(6);
  const std::vector<int64_t> s = mix_sample(10, 4, a);
  EXPECT_EQ(s.size(), 4u);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  EXPECT_EQ(std::adjacent_find(s.begin(), s.end()), s.end());  // distinct
  EXPECT_EQ(s, mix_sample(10, 4, b));                          // same seed, same sample
  EXPECT_NE(s, mix_sample(10, 4, c));
  // 7 from 3: every record twice, one of them a third time.
  Rng d(1);
  const std::vector<int64_t> r = mix_sample(3, 7, d);
  std::map<int64_t, int> count;
  for (int64_t i : r) ++count[i];
  ASSERT_EQ(count.size(), 3u);
  int threes = 0;
  for (auto [i, n] : count) {
    EXPECT_TRUE(n == 2 || n == 3) << i;
    threes += n == 3;
  }
  EXPECT_EQ(threes, 1);
  Rng e(1);
  EXPECT_TRUE(mix_sample(0, 0, e).empty());
}

TEST(Mix, PermutationIsSeeded) {
  Rng a(3), b(3);
  const std::vector<int64_t> p = seeded_permutation(20, a);
  EXPECT_EQ(p, seeded_permutation(20, b));
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(sorted[i], i);
}

class MixDataset : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kTestData + "/qwen3/tokenizer.json"))
        << kTestData << "/qwen3 is missing: run `bash scripts/fetch_testdata.sh` first";
  }
  static const Tokenizer& tok() {
    static const Tokenizer t = Tokenizer::from_dir(kTestData + "/qwen3");
    return t;
  }
  // `n` records whose first id is `tag` and second id is the record number: {tag, i, 7}.
  std::string write(const std::string& name, int tag, int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
      s += "{\"input_ids\":[" + std::to_string(tag) + "," + std::to_string(i) + ",7]}\n";
    test::write_text(dir_ / name, s);
    return dir_ / name;
  }
  test::TempDir dir_;
};

// Count of examples per tag, and of each (tag, record) pair.
std::map<int32_t, int64_t> tags(const Dataset& ds,
                                std::map<std::pair<int32_t, int32_t>, int>* per_record = nullptr) {
  std::map<int32_t, int64_t> out;
  for (const Example& ex : ds.examples) {
    ++out[ex.ids[0]];
    if (per_record) ++(*per_record)[{ex.ids[0], ex.ids[1]}];
  }
  return out;
}

TEST_F(MixDataset, ExactCountsInterleavedAndSeeded) {
  const std::string main = write("main.jsonl", 1, 70);
  DatasetOptions o;
  o.seq_len = 16;
  o.pack = PackMode::kSequential;  // keeps the interleaved order in the rows
  o.seed = 11;
  o.mixes = {{write("a.jsonl", 2, 50), 0.2}, {write("b.jsonl", 3, 40), 0.1}};
  const Dataset ds = dataset_build({main}, tok(), nullptr, o);
  EXPECT_EQ(tags(ds), (std::map<int32_t, int64_t>{{1, 70}, {2, 20}, {3, 10}}));
  EXPECT_EQ(ds.stats.examples, 100);
  ASSERT_EQ(ds.stats.sources.size(), 3u);
  EXPECT_EQ(ds.stats.sources[1].records, 50);
  EXPECT_EQ(ds.stats.sources[1].examples, 20);
  EXPECT_EQ(ds.stats.sources[2].examples, 10);
  EXPECT_EQ(ds.stats.records, 100);
  // Interleaved: the mix examples are not all at the end, and the main data is not left in file order.
  int64_t mix_in_first_half = 0;
  for (int i = 0; i < 50; ++i) mix_in_first_half += ds.examples[i].ids[0] != 1;
  EXPECT_GT(mix_in_first_half, 0);
  // Same seed, same data set; another seed, another order and sample.
  EXPECT_EQ(ds.fingerprint(), dataset_build({main}, tok(), nullptr, o).fingerprint());
  o.seed = 12;
  const Dataset other = dataset_build({main}, tok(), nullptr, o);
  EXPECT_EQ(tags(other), tags(ds));
  EXPECT_NE(other.fingerprint(), ds.fingerprint());
}

TEST_F(MixDataset, SmallMixFileRepeatsEvenly) {
  const std::string main = write("main.jsonl", 1, 6);
  DatasetOptions o;
  o.seq_len = 16;
  o.mixes = {{write("small.jsonl", 2, 3), 0.6}};  // 6 main = 40% -> 9 mix examples from 3 records
  std::map<std::pair<int32_t, int32_t>, int> per_record;
  const Dataset ds = dataset_build({main}, tok(), nullptr, o);
  EXPECT_EQ(tags(ds, &per_record), (std::map<int32_t, int64_t>{{1, 6}, {2, 9}}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ((per_record[{2, i}]), 3) << i;
}

TEST_F(MixDataset, SkippedMixRecordsLoseOnlyTheirDraws) {
  const std::string main = write("main.jsonl", 1, 8);
  // Record 1 of the mix renders badly (an id outside the vocabulary); 2 draws of 2 records each.
  test::write_text(dir_ / "m.jsonl", "{\"input_ids\":[2,0,7]}\n{\"input_ids\":[2,999999,7]}\n");
  DatasetOptions o;
  o.seq_len = 16;
  o.skip_bad = true;
  o.mixes = {{dir_ / "m.jsonl", 0.5}};  // 8 main -> 8 mix draws: each record 4 times
  std::map<std::pair<int32_t, int32_t>, int> per_record;
  const Dataset ds = dataset_build({main}, tok(), nullptr, o);
  EXPECT_EQ(tags(ds, &per_record), (std::map<int32_t, int64_t>{{1, 8}, {2, 4}}));
  EXPECT_EQ((per_record[{2, 0}]), 4);
  EXPECT_EQ(ds.stats.skipped, 1);
  o.skip_bad = false;
  EXPECT_THROW(dataset_build({main}, tok(), nullptr, o), FormatError);
}

TEST_F(MixDataset, BadMixes) {
  const std::string main = write("main.jsonl", 1, 5);
  DatasetOptions o;
  o.seq_len = 16;
  o.mixes = {{write("a.jsonl", 2, 5), 0.7}, {write("b.jsonl", 3, 5), 0.3}};
  EXPECT_THROW(dataset_build({main}, tok(), nullptr, o), ConfigError);
  test::write_text(dir_ / "empty.jsonl", "\n");
  o.mixes = {{dir_ / "empty.jsonl", 0.3}};
  EXPECT_THROW(dataset_build({main}, tok(), nullptr, o), ConfigError);
  o.mixes = {{dir_ / "missing.jsonl", 0.3}};
  EXPECT_THROW(dataset_build({main}, tok(), nullptr, o), IoError);
}

}  // namespace
}  // namespace tune
