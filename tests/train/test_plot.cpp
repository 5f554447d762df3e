// tune plot: SVG and PNG files from a training log, and a bad log line is an error naming file:line.
#include <cstring>

#include "core/error.h"
#include "io/json.h"
#include "train/plot.h"
#include "test_util.h"

namespace tune {

TEST(Plot, WritesSvgAndPng) {
  test::TempDir dir;
  std::string log;
  for (int s = 1; s <= 30; ++s)
    log += "{\"step\":" + std::to_string(s) + ",\"loss\":" + std::to_string(3.0 - 0.05 * s) + ",\"lr\":0.001}\n";
  test::write_text(dir / "log.jsonl", log);
  const test::RunResult svg = test::run_tune("plot " + (dir / "log.jsonl") + " --out " + (dir / "loss.svg"));
  ASSERT_EQ(svg.exit_code, 0) << svg.output;
  const std::string s = read_file(dir / "loss.svg");
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  size_t lines = 0;
  for (size_t p = s.find("<line"); p != std::string::npos; p = s.find("<line", p + 1)) ++lines;
  EXPECT_GE(lines, 29u + 29u) << "a segment per step for loss and lr";

  const test::RunResult png = test::run_tune("plot " + (dir / "log.jsonl") + " --out " + (dir / "loss.png"));
  ASSERT_EQ(png.exit_code, 0) << png.output;
  const std::string p = read_file(dir / "loss.png");
  ASSERT_GT(p.size(), 1000u);
  EXPECT_EQ(std::memcmp(p.data(), "\x89PNG\r\n\x1a\n", 8), 0);
  EXPECT_EQ(p.substr(p.size() - 8, 4), "IEND");
}

TEST(Plot, BadLogLine) {
  test::TempDir dir;
  test::write_text(dir / "log.jsonl", "{\"step\":1,\"loss\":2.0}\n{\"step\":2}\n");
  try {
    plot_read_log(dir / "log.jsonl");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("log.jsonl:2"), std::string::npos) << e.what();
  }
  const test::RunResult r = test::run_tune("plot " + (dir / "log.jsonl") + " --out " + (dir / "x.jpg"));
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace tune
