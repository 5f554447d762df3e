// tune plot LOG.jsonl [LOG2.jsonl ...] --out FILE.svg|png [--labels a,b]: loss and lr curves of training runs.
#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "core/error.h"
#include "cli/commands.h"
#include "train/plot.h"

namespace tune::cli {

int cmd_plot(int argc, char** argv) {
  Args a("plot", argc, argv, {"--out", "--labels"}, {});
  if (a.positionals().empty()) throw ConfigError("tune plot: give at least one LOG.jsonl", "tune plot run/train_log.jsonl --out loss.png");
  std::vector<LogSeries> series;
  for (const std::string& p : a.positionals()) series.push_back(plot_read_log(p));
  std::vector<std::string> labels;
  std::stringstream ss(a.get("--labels", ""));
  for (std::string l; std::getline(ss, l, ',');) labels.push_back(l);
  if (labels.empty())
    for (const std::string& p : a.positionals()) labels.push_back(p.size() > 40 ? "..." + p.substr(p.size() - 37) : p);
  plot_write(series, labels, a.require("--out"));
  std::printf("wrote %s\n", a.require("--out").c_str());
  return 0;
}

}  // namespace tune::cli
