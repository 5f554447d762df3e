// Built-in model shapes (the real Qwen sizes, plus a tiny one for demos and tests), so benchmarks and demos run on
// random weights of real shapes with nothing downloaded.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace tune {

// Throws ConfigError listing the known names when `name` is unknown.
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace tune
