// tune init (--preset NAME | --config FILE) --out DIR [--seed N] [--std X] [--dtype f32|bf16|f16] [--norm-spread S]:
// writes a model with seeded random weights in Hugging Face layout (for demos, tests and benchmarks; nothing is
// downloaded).
#include <cmath>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "io/json.h"
#include "model/model.h"
#include "model/names.h"
#include "model/presets.h"

namespace tune::cli {

namespace {

// --norm-spread S: the RMSNorm weights in front of the matmuls (attn_norm, ffn_norm, output_norm) become
// exp(S·N(0,1) − S²) per channel: lognormal, so channel energies span a wide range as in trained models (random
// weights with norms near 1 give every input column the same energy, leaving an importance matrix nothing to
// weigh), with E[w²] = 1 so the activations keep the scale of the unspread model.
void spread_norms(Model& m, double spread, uint64_t seed) {
  if (!(spread >= 0)) throw ConfigError("tune init: --norm-spread must be >= 0");
  Rng rng(seed ^ 0x6e6f726d73707264ull);
  for (const TensorSpec& s : model_tensor_specs(m.config)) {
    const bool hidden_norm = s.name == "output_norm.weight" || s.name.ends_with(".attn_norm.weight") ||
                             s.name.ends_with(".ffn_norm.weight");
    if (!hidden_norm) continue;
    Tensor& t = weights_field(m.weights, s);
    const float offset = m.config.norm_zero_centered ? 1.0f : 0.0f;  // zero-centred norms store scale - 1
    for (int64_t i = 0; i < t.numel(); ++i)
      t.f32()[i] = float(std::exp(spread * rng.normal() - spread * spread)) - offset;
  }
}

}  // namespace

int cmd_init(int argc, char** argv) {
  Args a("init", argc, argv, {"--preset", "--config", "--out", "--seed", "--std", "--dtype", "--norm-spread"}, {});
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
  Model m = model_random(c, seed, float(a.get_double("--std", 0.02)));
  if (a.has("--norm-spread")) spread_norms(m, a.get_double("--norm-spread", 0), seed);
  const std::string out = a.require("--out");
  model_save_hf(m, out, dtype);
  std::printf("wrote %s model (%lld parameters, seed %llu, %s) to %s\n", c.model_type.c_str(),
              (long long)m.num_parameters(), (unsigned long long)seed, dt.c_str(), out.c_str());
  return 0;
}

}  // namespace tune::cli
