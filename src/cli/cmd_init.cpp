// tune init (--preset NAME | --config FILE) --out DIR [--seed N] [--std X] [--dtype f32|bf16|f16]: writes a model
// with seeded random weights in Hugging Face layout (for demos, tests and benchmarks; nothing is downloaded).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/json.h"
#include "model/model.h"
#include "model/presets.h"

namespace tune::cli {

int cmd_init(int argc, char** argv) {
  Args a("init", argc, argv, {"--preset", "--config", "--out", "--seed", "--std", "--dtype"}, {});
  if (a.has("--preset") == a.has("--config"))
    throw ConfigError("tune init: give exactly one of --preset NAME or --config FILE");
  const ModelConfig c = a.has("--preset") ? preset_config(a.get("--preset", ""))
                                          : model_config_from_json(json_load_file(a.get("--config", "")),
                                                                   a.get("--config", ""));
  const std::string dt = a.get("--dtype", "bf16");
  DType dtype;
  if (dt == "f32") dtype = DType::F32;
  else if (dt == "bf16") dtype = DType::BF16;
  else if (dt == "f16") dtype = DType::F16;
  else throw ConfigError("tune init: --dtype must be f32, bf16 or f16, got '" + dt + "'");
  const uint64_t seed = uint64_t(a.get_int("--seed", 0));
  const Model m = model_random(c, seed, float(a.get_double("--std", 0.02)));
  const std::string out = a.require("--out");
  model_save_hf(m, out, dtype);
  std::printf("wrote %s model (%lld parameters, seed %llu, %s) to %s\n", c.model_type.c_str(),
              (long long)m.num_parameters(), (unsigned long long)seed, dt.c_str(), out.c_str());
  return 0;
}

}  // namespace tune::cli
