// Loss and learning-rate curves of a training log (the JSONL that tune train writes) as an SVG or PNG image:
// loss (and its moving average) on the left axis, learning rate on the right, steps along the bottom.
#pragma once

#include <string>
#include <vector>

namespace tune {

struct LogSeries {
  std::vector<double> step, loss, lr;
};

// Reads STEP, loss and lr from each line; FormatError naming file:line on a bad line.
LogSeries plot_read_log(const std::string& path);
// Writes `out`; the format follows its extension (.svg or .png).
void plot_write(const std::vector<LogSeries>& series, const std::vector<std::string>& labels, const std::string& out);

}  // namespace tune
