// Tests of the byte-level BPE tokenizer: llama.cpp's Qwen test vectors, the project corpus against ids made
// by HF `tokenizers` (tools/reference/make_tokenizer_refs.py), both merge formats, added-token flags on a
// tiny synthetic tokenizer, the pre-tokenizer and NFC by hand-derived cases, round trips and bad files. Real
// tokenizers: .testdata/ (bash scripts/fetch_testdata.sh); references: tests/data/tokenizer/.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_refs.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kTestData = TUNE_SOURCE_DIR "/.testdata";
const std::string kRefDir = TUNE_TEST_DATA_DIR "/tokenizer";

std::string read_all(const std::string& path) {
  return tokenizer_refs::read_file(path);
}

// Fails the calling test when fetched test data is missing.
#define REQUIRE_TESTDATA(path) \
  ASSERT_TRUE(fs::exists(path)) << (path) << " is missing: run `bash scripts/fetch_testdata.sh` first"

// The real tokenizers are loaded once for the whole suite.
const Tokenizer& qwen3() {
  static const Tokenizer tok = Tokenizer::from_dir(kTestData + "/qwen3");
  return tok;
}
const Tokenizer& qwen2_5() {
  static const Tokenizer tok = Tokenizer::from_dir(kTestData + "/qwen2_5");
  return tok;
}

struct Vector {
  std::string input;
  std::vector<int32_t> ids;
};

// llama.cpp's vocab test files: inputs separated by "\n__ggml_vocab_test__\n", one line of ids per input.
std::vector<Vector> read_llama_vectors(const std::string& name) {
  const std::string base = kTestData + "/llama/models/ggml-vocab-" + name + ".gguf";
  const std::string inp = read_all(base + ".inp");
  std::istringstream out(read_all(base + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> vectors;
  for (size_t pos = 0;;) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    Vector v{inp.substr(pos, end - pos), {}};
    std::string line;
    std::getline(out, line);
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) v.ids.push_back(id);
    vectors.push_back(std::move(v));
    pos = end + sep.size();
  }
  return vectors;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// --- llama.cpp vectors
// -------------------------------------------------------------------------------------------

TEST(TokenizerVectors, Qwen2VectorsWithQwen3Tokenizer) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  REQUIRE_TESTDATA(kTestData + "/llama/models/ggml-vocab-qwen2.gguf.inp");
  const std::vector<Vector> vectors = read_llama_vectors("qwen2");
  ASSERT_EQ(vectors.size(), 46u);
  for (const Vector& v : vectors) {
    const std::vector<int32_t> got = qwen3().encode(v.input);
    EXPECT_EQ(got, v.ids) << "input [" << v.input << "]\n got: " << ids_str(got)
                          << "\nwant: " << ids_str(v.ids);
    EXPECT_EQ(qwen3().decode(got), unicode_nfc(v.input));
  }
}

TEST(TokenizerVectors, Qwen2VectorsWithQwen25Tokenizer) {
  REQUIRE_TESTDATA(kTestData + "/qwen2_5/tokenizer.json");
  REQUIRE_TESTDATA(kTestData + "/llama/models/ggml-vocab-qwen2.gguf.inp");
  for (const Vector& v : read_llama_vectors("qwen2")) {
    EXPECT_EQ(qwen2_5().encode(v.input), v.ids) << "input [" << v.input << "]";
  }
}

// llama.cpp's qwen35 vocab is the Qwen2 vocab with the qwen35 regex, and llama.cpp applies no normalizer.
TEST(TokenizerVectors, Qwen35Vectors) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  REQUIRE_TESTDATA(kTestData + "/llama/models/ggml-vocab-qwen35.gguf.inp");
  const std::string path = kTestData + "/qwen3/tokenizer.json";
  const Tokenizer raw =
      Tokenizer::from_file(path, {.pre_tokenizer = pre_tokenizer_kind_from_gguf("qwen35"), .nfc = false});
  const Tokenizer nfc = Tokenizer::from_file(path, {.pre_tokenizer = PreTokenizerKind::kQwen35});
  EXPECT_EQ(raw.pre_tokenizer(), PreTokenizerKind::kQwen35);
  EXPECT_FALSE(raw.nfc());
  EXPECT_TRUE(nfc.nfc());
  const std::vector<Vector> vectors = read_llama_vectors("qwen35");
  ASSERT_EQ(vectors.size(), 50u);
  int decomposed_inputs = 0;
  for (const Vector& v : vectors) {
    EXPECT_EQ(raw.encode(v.input), v.ids) << "input [" << v.input << "]";
    EXPECT_EQ(raw.decode(raw.encode(v.input)), v.input);
    // With NFC (what Qwen3.5's own tokenizer.json asks for), decomposed inputs encode as their composed form.
    const std::string composed = unicode_nfc(v.input);
    EXPECT_EQ(nfc.encode(v.input), raw.encode(composed)) << "input [" << v.input << "]";
    if (composed != v.input) {
      ++decomposed_inputs;
      EXPECT_NE(nfc.encode(v.input), v.ids);
    }
  }
  EXPECT_EQ(decomposed_inputs, 3);  // "é", "résumé" and the run of "à", written decomposed
}

// --- the project corpus against HF tokenizers
// ----------------------------------------------------------------------

TEST(TokenizerCorpus, Qwen3MatchesHfTokenizers) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  const std::string corpus = read_all(kRefDir + "/corpus.txt");
  const tokenizer_refs::Refs refs = tokenizer_refs::read(kRefDir + "/tokenizer_refs_qwen3.bin");
  ASSERT_EQ(refs.chunk_offsets.back(), corpus.size()) << "corpus.txt and the reference are out of step";
  const std::vector<std::string_view> chunks = tokenizer_refs::chunks(corpus, refs);
  int failures = 0;
  for (size_t k = 0; k < chunks.size(); ++k) {
    ASSERT_TRUE(refs.has_record[k]);
    const std::vector<int32_t> got = qwen3().encode(chunks[k]);
    const std::vector<int32_t>& want = refs.ids[k];
    if (got != want && ++failures <= 3) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      const size_t from = i > 5 ? i - 5 : 0;
      ADD_FAILURE() << "chunk " << k << " differs at id " << i << ": got "
                    << qwen3().token_text(i < got.size() ? got[i] : -1) << ", want "
                    << qwen3().token_text(i < want.size() ? want[i] : -1) << " near ["
                    << qwen3().decode(std::span(want).subspan(from, std::min<size_t>(10, want.size() - from)))
                    << "]";
    }
    EXPECT_EQ(qwen3().decode(got), unicode_nfc(chunks[k]));
  }
  EXPECT_EQ(failures, 0);
}

TEST(TokenizerCorpus, Qwen25MatchesHfTokenizers) {
  REQUIRE_TESTDATA(kTestData + "/qwen2_5/tokenizer.json");
  const std::string corpus = read_all(kRefDir + "/corpus.txt");
  const tokenizer_refs::Refs refs3 = tokenizer_refs::read(kRefDir + "/tokenizer_refs_qwen3.bin");
  // The Qwen2.5 file edits the Qwen3 ids where they differ (Qwen2.5 lacks <think>, <tool_response> and their
  // ends).
  const tokenizer_refs::Refs refs25 =
      tokenizer_refs::read(kRefDir + "/tokenizer_refs_qwen2_5.bin", &refs3.ids);
  ASSERT_EQ(refs25.chunk_offsets, refs3.chunk_offsets);
  const std::vector<std::string_view> chunks = tokenizer_refs::chunks(corpus, refs25);
  int failures = 0, edited = 0;
  for (size_t k = 0; k < chunks.size(); ++k) {
    failures += qwen2_5().encode(chunks[k]) != refs25.ids[k];
    edited += refs25.has_record[k];
  }
  EXPECT_GT(edited, 0);
  EXPECT_EQ(failures, 0);
}

TEST(TokenizerCorpus, ThreadsAgree) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  const std::string corpus = read_all(kRefDir + "/corpus.txt");
  const tokenizer_refs::Refs refs = tokenizer_refs::read(kRefDir + "/tokenizer_refs_qwen3.bin");
  const std::vector<std::string_view> chunks = tokenizer_refs::chunks(corpus, refs);
  const Tokenizer fresh = Tokenizer::from_file(kTestData + "/qwen3/tokenizer.json");  // cold word cache
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t k = t % 2; k < chunks.size(); k += 2) failures[t] += fresh.encode(chunks[k]) != refs.ids[k];
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

// --- real tokenizer properties
// --------------------------------------------------------------------------------------

TEST(TokenizerQwen, SpecialTokensAndConfig) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  const Tokenizer& tok = qwen3();
  EXPECT_EQ(tok.vocab_size(), 151669);
  EXPECT_EQ(tok.eos_id(), 151645);  // <|im_end|>
  EXPECT_EQ(tok.pad_id(), 151643);  // <|endoftext|>
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_EQ(tok.token_id("<|im_start|>"), 151644);
  EXPECT_EQ(tok.token_id("<think>"), 151667);
  EXPECT_EQ(tok.token_id("Hello"), 9707);
  EXPECT_EQ(tok.token_id("no such token"), -1);
  EXPECT_EQ(tok.token_text(9707), "Hello");
  EXPECT_EQ(tok.token_text(220), "\xC4\xA0");  // "Ġ", the space byte
  EXPECT_EQ(tok.token_text(151645), "<|im_end|>");
  EXPECT_EQ(tok.token_text(151700), "");
  EXPECT_EQ(tok.token_text(-1), "");
  EXPECT_TRUE(tok.is_special(151643));
  EXPECT_TRUE(tok.is_special(151645));
  EXPECT_FALSE(tok.is_special(151667));  // <think> is an added token but not special
  EXPECT_FALSE(tok.is_special(9707));
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizerKind::kQwen2);
  EXPECT_TRUE(tok.nfc());

  const std::string chat =
      "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
  const std::vector<int32_t> ids = tok.encode(chat);
  const std::vector<int32_t> want = {151644, 872, 198,    9707, 151645, 198, 151644,
                                     77091,  198, 151667, 271,  151668, 271};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(tok.decode(ids), chat);
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "user\nHello\nassistant\n<think>\n\n</think>\n\n");
  // encode_ordinary reads the same text as plain characters.
  const std::vector<int32_t> plain = tok.encode_ordinary(chat);
  for (int32_t id : plain) EXPECT_LT(id, 151643);
  EXPECT_EQ(tok.decode(plain), chat);
  EXPECT_EQ(tok.encode_ordinary("Hello world"), tok.encode("Hello world"));
  // Ids without a token (the padding rows of the embedding) and negative ids decode to nothing, as in HF.
  const std::vector<int32_t> with_padding = {9707, 151700, -3, 1879};
  EXPECT_EQ(tok.decode(with_padding), "Hello world");
}

TEST(TokenizerQwen, BothMergeFormatsAgree) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  REQUIRE_TESTDATA(kTestData + "/qwen2_5/tokenizer.json");
  // Qwen3 writes merges as [["Ġ","Ġ"], ...], Qwen2.5 as ["Ġ Ġ", ...]; the lists are the same.
  ASSERT_EQ(qwen3().merges().size(), 151387u);
  EXPECT_EQ(qwen3().merges(), qwen2_5().merges());
  EXPECT_EQ(qwen3().merges()[0], "\xC4\xA0 \xC4\xA0");
  EXPECT_EQ(qwen2_5().vocab_size(), 151665);
  EXPECT_EQ(qwen2_5().token_id("<think>"), -1);
  EXPECT_EQ(qwen2_5().encode("a<think>b"), qwen3().encode_ordinary("a<think>b"));
}

TEST(TokenizerQwen, RoundTrip) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  const Tokenizer& tok = qwen3();
  const std::vector<std::string> texts = {
      "",
      " ",
      "\n",
      "Hello, world!",
      "  leading and trailing  ",
      "tab\tand\r\nCRLF\r\n",
      "日本語のテキスト、そして中文。",
      "😶‍🌫️ 👩🏽‍💻 🇺🇳 1️⃣",
      "Ünïcödé ñ ß ẞ ǅ",
      "عربي עברית हिन्दी ไทย 한국어",
      std::string(5000, 'a'),
      std::string(3000, ' ') + "x",
      "中" + std::string(20000, '\n'),
      "<|im_end|><|im_end|>",
      "\x7f\x01\x02",
  };
  for (const std::string& t : texts) {
    EXPECT_EQ(tok.decode(tok.encode(t)), unicode_nfc(t)) << "[" << t.substr(0, 40) << "]";
    EXPECT_EQ(tok.decode(tok.encode_ordinary(t)), unicode_nfc(t));
  }
  // A long run without spaces (one piece of 30,000 bytes) takes the heap path of the merge loop.
  std::string cjk;
  for (int i = 0; i < 10000; ++i) utf8_append(cjk, 0x4E00 + (i * 7919) % 20000);
  EXPECT_EQ(tok.decode(tok.encode(cjk)), cjk);
  // Ill-formed UTF-8 still round-trips through the bytes; decode then repairs it as HF would (U+FFFD).
  const std::string bad = "ok \xFF\xC3 \xE2\x82 end \xED\xA0\x80";
  const std::vector<int32_t> ids = tok.encode(bad);
  EXPECT_EQ(tok.decode(ids), utf8_lossy(bad));
  EXPECT_EQ(utf8_lossy(bad),
            "ok \xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD end \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerQwen, CopiesShareData) {
  REQUIRE_TESTDATA(kTestData + "/qwen3/tokenizer.json");
  const Tokenizer copy = qwen3();
  EXPECT_EQ(copy.encode("copy me"), qwen3().encode("copy me"));
  EXPECT_EQ(&copy.merges(), &qwen3().merges());
}

// --- pre-tokenizer
// ------------------------------------------------------------------------------------------------

using Pieces = std::vector<std::string_view>;

TEST(PreTokenizer, Qwen2Regex) {
  const auto split = [](std::string_view s) { return pre_tokenize(PreTokenizerKind::kQwen2, s); };
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("  Hello"), (Pieces{" ", " Hello"}));          // \s+(?!\S) leaves one space to the word
  EXPECT_EQ(split("a  \n\n b"), (Pieces{"a", "  \n\n", " b"}));  // \s*[\r\n]+ ends at the last newline
  EXPECT_EQ(split("a   "), (Pieces{"a", "   "}));                // at the end, the whole run
  EXPECT_EQ(split("a \t b"), (Pieces{"a", " \t", " b"}));
  EXPECT_EQ(split("x\t(y"), (Pieces{"x", "\t", "(y"}));  // one punctuation char prefixes letters
  EXPECT_EQ(split("x \r\n"), (Pieces{"x", " \r\n"}));
  EXPECT_EQ(split("\r\n\r\nx"), (Pieces{"\r\n\r\n", "x"}));
  EXPECT_EQ(split("!!!\n\nabc"), (Pieces{"!!!\n\n", "abc"}));  // punctuation takes the newlines after it
  EXPECT_EQ(split(" !!"), (Pieces{" !!"}));
  EXPECT_EQ(split("3.14"), (Pieces{"3", ".", "1", "4"}));
  EXPECT_EQ(split("I'M here"), (Pieces{"I", "'M", " here"}));
  EXPECT_EQ(split("we'Ll they'RE it's'"), (Pieces{"we", "'Ll", " they", "'RE", " it", "'s", "'"}));
  EXPECT_EQ(split("it'\xC5\xBF"), (Pieces{"it", "'\xC5\xBF"}));            // long s folds to s
  EXPECT_EQ(split("don\xE2\x80\x99t"), (Pieces{"don", "\xE2\x80\x99t"}));  // U+2019 is no apostrophe
  EXPECT_EQ(split("'"), (Pieces{"'"}));
  EXPECT_EQ(split("e\xCC\x81"), (Pieces{"e", "\xCC\x81"}));  // U+0301 is \p{M}, not \p{L}
  EXPECT_EQ(split("\xCC\x81"
                  "abc"),
            (Pieces{"\xCC\x81"
                    "abc"}));
  EXPECT_EQ(split("x\xC2\xA0y"), (Pieces{"x", "\xC2\xA0y"}));  // NBSP is \s
  EXPECT_EQ(split("x\xE3\x80\x80\xE3\x80\x80y"), (Pieces{"x", "\xE3\x80\x80", "\xE3\x80\x80y"}));
  EXPECT_EQ(split("x\xE2\x80\x8By"), (Pieces{"x", "\xE2\x80\x8By"}));  // ZWSP is not \s
  EXPECT_EQ(split("\xFF"
                  "ab"),
            (Pieces{"\xFF"
                    "ab"}));  // ill-formed bytes act as punctuation
  EXPECT_EQ(split(""), Pieces{});
}

TEST(PreTokenizer, Qwen35Regex) {
  const auto split = [](std::string_view s) { return pre_tokenize(PreTokenizerKind::kQwen35, s); };
  EXPECT_EQ(split("e\xCC\x81"), (Pieces{"e\xCC\x81"}));
  EXPECT_EQ(split("a\xCC\x81"
                  "b c"),
            (Pieces{"a\xCC\x81"
                    "b",
                    " c"}));
  EXPECT_EQ(split("!\xCC\x81"), (Pieces{"!\xCC\x81"}));
  EXPECT_EQ(split(" !!\xCC\x81"), (Pieces{" !!", "\xCC\x81"}));
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
}

TEST(PreTokenizer, Names) {
  EXPECT_EQ(pre_tokenizer_kind_from_gguf("qwen2"), PreTokenizerKind::kQwen2);
  EXPECT_EQ(pre_tokenizer_kind_from_gguf("qwen35"), PreTokenizerKind::kQwen35);
  EXPECT_THROW(pre_tokenizer_kind_from_gguf("llama-bpe"), UnsupportedError);
  for (PreTokenizerKind k : {PreTokenizerKind::kQwen2, PreTokenizerKind::kQwen35}) {
    EXPECT_EQ(pre_tokenizer_kind_from_gguf(pre_tokenizer_gguf_name(k)), k);
    EXPECT_EQ(pre_tokenizer_kind_from_regex(pre_tokenizer_regex(k)), k);
  }
  EXPECT_EQ(pre_tokenizer_kind_from_regex("\\s+"), std::nullopt);
}

// --- NFC
// ------------------------------------------------------------------------------------------------------------

TEST(Unicode, Nfc) {
  EXPECT_EQ(unicode_nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(unicode_nfc("e\xCC\x81"), "\xC3\xA9");                                 // e + acute -> é
  EXPECT_EQ(unicode_nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // Hangul jamo -> 한
  EXPECT_EQ(unicode_nfc("a\xCC\x82\xCC\xA3"),
            "\xE1\xBA\xAD");  // circumflex (230) before dot below (220) -> ậ
  EXPECT_EQ(unicode_nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");  // U+0958 is excluded from composition
  EXPECT_EQ(unicode_nfc("\xE2\x84\xAB"), "\xC3\x85");                  // singleton: Angstrom sign -> Å
  EXPECT_EQ(unicode_nfc("\xCC\x81"
                        "a"),
            "\xCC\x81"
            "a");  // a leading mark stays
  EXPECT_EQ(unicode_nfc("\xFF"
                        "e\xCC\x81\xC3"),
            "\xFF\xC3\xA9\xC3");  // ill-formed bytes pass through
  std::string out;
  EXPECT_FALSE(unicode_nfc("already \xC3\xA9 composed", out));
  EXPECT_TRUE(unicode_nfc("not e\xCC\x81", out));
  EXPECT_EQ(out, "not \xC3\xA9");
}

// The Unicode data against what HF tokenizers itself does for every code point (its regex classes and NFC),
// as tools/reference/make_tokenizer_refs.py --probe recorded it.
TEST(Unicode, MatchesTokenizersProbe) {
  const nlohmann::json probe = nlohmann::json::parse(read_all(kRefDir + "/unicode_probe.json"));
  auto cls = [](uint32_t cp) -> std::string {
    const uint8_t f = unicode_flags(cp);
    return f & kCharLetter ? "L" : f & kCharMark ? "M" : f & kCharNumber ? "N" : f & kCharSpace ? "WS" : "P";
  };
  int class_mismatches = 0;
  for (const auto& run : probe.at("class_runs")) {
    const std::string want = run[2].get<std::string>();
    for (uint32_t cp = run[0].get<uint32_t>(); cp <= run[1].get<uint32_t>(); ++cp) {
      if (cp == '\n' || cp == '\r') continue;  // the probe cannot classify newlines
      if (cls(cp) != want && ++class_mismatches <= 5)
        ADD_FAILURE() << "U+" << std::hex << cp << ": " << cls(cp);
    }
  }
  EXPECT_EQ(class_mismatches, 0);
  // NFC of every character alone; the probe lists those it changes.
  const auto hex_chars = [](const std::string& hex) {
    std::string out;
    std::istringstream in(hex);
    for (std::string h; in >> h;) utf8_append(out, std::stoul(h, nullptr, 16));
    return out;
  };
  const auto& changed = probe.at("nfc_changed");
  ASSERT_FALSE(changed.contains("error"));
  int nfc_mismatches = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == ' ') continue;
    std::string c, want;
    utf8_append(c, cp);
    char key[16];
    std::snprintf(key, sizeof key, "%04X", cp);
    want = changed.contains(key) ? hex_chars(changed.at(key).get<std::string>()) : c;
    if (unicode_nfc(c) != want && ++nfc_mismatches <= 5) ADD_FAILURE() << "NFC of U+" << key;
  }
  EXPECT_EQ(nfc_mismatches, 0);
  // Compositions that tokenizers' older NFC tables lack (U+11938, new in Unicode 13.0).
  for (const auto& [pair, result] : probe.at("nfc_pairs_differing_from_python").items()) {
    EXPECT_EQ(unicode_nfc(hex_chars(pair)), hex_chars(result.get<std::string>())) << pair;
  }
}

// --- a tiny synthetic tokenizer: flags, merge order, formats, bad files
// ------------------------------------------

class TinyTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tune_tok_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // GPT-2's byte-level character of byte b, as UTF-8.
  static std::string byte_char(int b) {
    int next = 256;
    for (int x = 0; x < 256; ++x) {
      const bool printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
      const int cp = printable ? x : next++;
      if (x == b) {
        std::string s;
        utf8_append(s, cp);
        return s;
      }
    }
    return {};
  }
  static std::string json_str(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  }

  // Vocab: the 256 bytes (id = byte), then he, ll, hell, hello, Ġh (256..260). Merges in that order.
  std::string tokenizer_json(
      bool merges_as_pairs = true, const std::string& normalizer = R"({"type": "NFC"})",
      const std::string& regex = std::string(pre_tokenizer_regex(PreTokenizerKind::kQwen2)),
      const std::string& extra_merge = "") const {
    std::string vocab;
    for (int b = 0; b < 256; ++b) vocab += json_str(byte_char(b)) + ": " + std::to_string(b) + ", ";
    vocab +=
        R"("he": 256, "ll": 257, "hell": 258, "hello": 259, )" + json_str(byte_char(' ') + "h") + ": 260";
    std::vector<std::pair<std::string, std::string>> merges = {
        {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {byte_char(' '), "h"}};
    std::string m;
    for (const auto& [a, b] : merges) {
      m += (m.empty() ? "" : ", ") +
           (merges_as_pairs ? "[" + json_str(a) + ", " + json_str(b) + "]" : json_str(a + " " + b));
    }
    if (!extra_merge.empty()) m += ", " + extra_merge;
    std::string escaped_regex;
    for (char c : regex) {
      if (c == '\\' || c == '"') escaped_regex += '\\';
      escaped_regex += c;
    }
    return R"({"version": "1.0", "added_tokens": [
  {"id": 300, "content": "<L>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": false},
  {"id": 301, "content": "<R>", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": false},
  {"id": 302, "content": "<W>", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
  {"id": 303, "content": "[)"
           "e\xCC\x81"
           R"(]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false},
  {"id": 304, "content": "<|sp|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 305, "content": "<|sp|>x", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}],
 "normalizer": )" +
           normalizer + R"(,
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": ")" +
           escaped_regex + R"("}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
 "post_processor": null,
 "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": {)" +
           vocab + R"(}, "merges": [)" + m + R"(]}})";
  }

  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  // Expects `fn` to throw E with a message that names `path`.
  template <class E, class F>
  void expect_error(F&& fn, const std::string& path, const std::string& detail) {
    try {
      fn();
      ADD_FAILURE() << "no exception; expected one about " << detail;
    } catch (const E& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(detail), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "wrong exception type: " << e.what();
    }
  }

  fs::path dir_;
};

TEST_F(TinyTokenizer, MergeOrderAndBothFormats) {
  for (bool pairs : {true, false}) {
    const Tokenizer tok = Tokenizer::from_file(write("tokenizer.json", tokenizer_json(pairs)));
    EXPECT_EQ(tok.encode("hello"), (std::vector<int32_t>{259}));
    // Ġh has a higher rank than h e, so " hello" becomes Ġ + hello, never Ġh + ...
    EXPECT_EQ(tok.encode(" hello"), (std::vector<int32_t>{' ', 259}));
    EXPECT_EQ(tok.encode("hhe"), (std::vector<int32_t>{'h', 256}));
    EXPECT_EQ(tok.encode("lll"), (std::vector<int32_t>{257, 'l'}));  // leftmost first on equal rank
    EXPECT_EQ(tok.encode(" h"), (std::vector<int32_t>{260}));
    EXPECT_EQ(tok.merges()[4], byte_char(' ') + " h");
    EXPECT_EQ(tok.vocab_size(), 306);
  }
}

TEST_F(TinyTokenizer, AddedTokenFlags) {
  const Tokenizer tok = Tokenizer::from_file(write("tokenizer.json", tokenizer_json()));
  using Ids = std::vector<int32_t>;
  EXPECT_EQ(tok.encode("a <L> b"), (Ids{'a', 300, ' ', 'b'}));  // lstrip eats the space before
  EXPECT_EQ(tok.encode("a <R> b"), (Ids{'a', ' ', 301, 'b'}));  // rstrip eats the space after
  EXPECT_EQ(tok.encode("a<L>b"), (Ids{'a', 300, 'b'}));
  EXPECT_EQ(tok.encode("x <W> y"), (Ids{'x', ' ', 302, ' ', 'y'}));  // single_word: whole word only
  EXPECT_EQ(tok.encode("x<W>y"), (Ids{'x', '<', 'W', '>', 'y'}));
  // normalized: true matches the NFC of its content in the NFC of the text, so both spellings match.
  EXPECT_EQ(tok.encode("[e\xCC\x81]"), (Ids{303}));
  EXPECT_EQ(tok.encode("[\xC3\xA9]"), (Ids{303}));
  EXPECT_EQ(tok.encode("<|sp|>xy"), (Ids{305, 'y'}));  // leftmost-longest
  EXPECT_EQ(tok.encode("<|sp|>y"), (Ids{304, 'y'}));
  EXPECT_EQ(tok.encode_ordinary("<L>"), (Ids{'<', 'L', '>'}));
  const Ids ids = {'a', 304, 'b', 300};
  EXPECT_EQ(tok.decode(ids), "a<|sp|>b<L>");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "ab<L>");
  EXPECT_TRUE(tok.is_special(304));
  EXPECT_FALSE(tok.is_special(300));
}

TEST_F(TinyTokenizer, ConfigNames) {
  write("tokenizer.json", tokenizer_json());
  write("tokenizer_config.json", R"({"eos_token": {"content": "<|sp|>", "lstrip": false}, "pad_token": "<R>",
                                    "bos_token": null})");
  const Tokenizer tok = Tokenizer::from_dir(dir_.string());
  EXPECT_EQ(tok.eos_id(), 304);
  EXPECT_EQ(tok.pad_id(), 301);
  EXPECT_EQ(tok.bos_id(), -1);
  const Tokenizer bare = Tokenizer::from_file((dir_ / "tokenizer.json").string());
  EXPECT_EQ(bare.eos_id(), -1);
}

TEST_F(TinyTokenizer, NoNormalizer) {
  const Tokenizer tok = Tokenizer::from_file(write("tokenizer.json", tokenizer_json(true, "null")));
  EXPECT_FALSE(tok.nfc());
  EXPECT_EQ(tok.encode("e\xCC\x81").size(), 3u);
}

TEST_F(TinyTokenizer, BadFiles) {
  const std::string missing = (dir_ / "nope" / "tokenizer.json").string();
  expect_error<IoError>([&] { Tokenizer::from_file(missing); }, missing, "cannot open");
  expect_error<IoError>([&] { Tokenizer::from_dir((dir_ / "nope").string()); }, missing, "cannot open");

  const std::string good = tokenizer_json();
  struct Case {
    std::string text;
    std::string detail;
    bool unsupported;
  };
  const std::vector<Case> cases = {
      {"", "not valid JSON", false},
      {good.substr(0, good.size() / 2), "not valid JSON", false},
      {"[1, 2]", "expected a JSON object", false},
      {R"({"model": {"type": "BPE", "vocab": {}, "merges": []}})", "pre_tokenizer missing", false},
      {tokenizer_json(true, R"({"type": "Lowercase"})"), "normalizer", true},
      {tokenizer_json(true, R"({"type": "NFC"})", "\\s+"), "pre_tokenizer", true},
      {tokenizer_json(true, R"({"type": "NFC"})", std::string(pre_tokenizer_regex(PreTokenizerKind::kQwen2)),
                      "\"q z\""),
       "needs token \"qz\"", false},
      {tokenizer_json(true, R"({"type": "NFC"})", std::string(pre_tokenizer_regex(PreTokenizerKind::kQwen2)),
                      "\"qz\""),
       "is not \"a b\"", false},
      {[&] {
         std::string s = good;
         s.replace(s.find("\"type\": \"BPE\""), 13, "\"type\": \"WordPiece\"");
         return s;
       }(),
       "model.type", true},
      {[&] {
         std::string s = good;
         s.replace(s.find("\"vocab\": {"), 10, "\"vocab\": [{");
         s.replace(s.find("}, \"merges\""), 11, "}], \"merges\"");
         return s;
       }(),
       "model.vocab must be an object", false},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = write("bad" + std::to_string(i) + ".json", cases[i].text);
    SCOPED_TRACE("case " + std::to_string(i));
    if (cases[i].unsupported) {
      expect_error<UnsupportedError>([&] { Tokenizer::from_file(path); }, path, cases[i].detail);
    } else {
      expect_error<FormatError>([&] { Tokenizer::from_file(path); }, path, cases[i].detail);
    }
  }

  write("tokenizer.json", good);
  const std::string config = write("tokenizer_config.json", R"({"eos_token": "<nope>"})");
  expect_error<FormatError>([&] { Tokenizer::from_dir(dir_.string()); }, config, "eos_token \"<nope>\"");
  write("tokenizer_config.json", "{oops");
  expect_error<FormatError>([&] { Tokenizer::from_dir(dir_.string()); }, config, "not valid JSON");
}

}  // namespace
}  // namespace tune
