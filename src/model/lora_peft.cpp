// PEFT adapter files: the name mapping and the config fields PEFT reads.
#include "model/lora_peft.h"

#include <cmath>
#include <filesystem>
#include <regex>

#include "io/json.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace tune {

std::string lora_peft_module(const Model& model, int64_t layer, LoraTarget t) {
  const bool attn = t == LoraTarget::Q || t == LoraTarget::K || t == LoraTarget::V || t == LoraTarget::O;
  const std::string prefix = model.report.hf_prefix.empty() ? "model." : model.report.hf_prefix;
  return "base_model.model." + prefix + "layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") +
         lora_target_module(t);
}

void lora_save_peft(const LoraAdapter& adapter, const Model& model, const std::string& dir,
                    const std::string& base_model_name) {
  fs::create_directories(dir);
  NamedTensors tensors;
  // target_modules: the module names when every layer that has a targeted linear carries LoRA on it, else a
  // regex naming each adapted module exactly (PEFT full-matches a string against module names). MoE models always
  // get the regex: PEFT rewrites a plain gate/up/down_proj list into expert parameters for them.
  Json targets = Json::array();
  for (int t = 0; t < kLoraTargets; ++t)
    if (adapter.config.targets[size_t(t)]) targets.push_back(lora_target_module(LoraTarget(t)));
  bool holes = model.config.has_moe();
  std::string regex;
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) {
        holes |= adapter.config.targets[size_t(t)] && LoraAdapter::target_shape(model.config, int64_t(l), LoraTarget(t)).first > 0;
        continue;
      }
      const std::string m = lora_peft_module(model, int64_t(l), LoraTarget(t));
      tensors.emplace_back(m + ".lora_A.weight", w.A);
      tensors.emplace_back(m + ".lora_B.weight", w.B);
      std::string name = m.substr(std::string("base_model.model.").size());
      for (size_t i = name.find('.'); i != std::string::npos; i = name.find('.', i + 2)) name.insert(i, "\\");
      regex += (regex.empty() ? "" : "|") + name;
    }
  }
  const LoraConfig& c = adapter.config;
  const Json cfg = {{"peft_type", "LORA"},
                    {"task_type", "CAUSAL_LM"},
                    {"base_model_name_or_path", base_model_name},
                    {"r", c.rank},
                    {"lora_alpha", c.alpha},
                    {"lora_dropout", c.dropout},
                    {"use_rslora", c.rslora},
                    {"target_modules", holes ? Json(regex) : targets},
                    {"bias", "none"},
                    {"fan_in_fan_out", false},
                    {"inference_mode", true},
                    {"init_lora_weights", true},
                    {"use_dora", false},
                    {"modules_to_save", nullptr},
                    {"layers_to_transform", nullptr},
                    {"rank_pattern", Json::object()},
                    {"alpha_pattern", Json::object()}};
  safetensors_write((fs::path(dir) / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  json_save_file((fs::path(dir) / "adapter_config.json").string(), cfg);
}

LoraAdapter lora_load_peft(const std::string& dir, const Model& model) {
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  const std::string st_path = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::exists(cfg_path))
    throw IoError(cfg_path + ": not found", "point --init-adapter at a PEFT adapter directory");
  if (!fs::exists(st_path))
    throw IoError(st_path + ": not found", "the adapter directory needs adapter_model.safetensors");
  const Json j = json_load_file(cfg_path);
  auto field = [&](const char* name) -> const Json& {
    if (!j.contains(name) || j[name].is_null())
      throw ConfigError(cfg_path + ": field '" + std::string(name) + "' is required but missing",
                        "is this a PEFT LoRA adapter?");
    return j[name];
  };
  if (j.contains("peft_type") && j["peft_type"] != "LORA")
    throw UnsupportedError(cfg_path + ": peft_type is " + j["peft_type"].dump() + "; tune loads LoRA adapters");
  if (j.value("use_dora", false)) throw UnsupportedError(cfg_path + ": DoRA adapters are not supported");
  for (const char* f : {"target_parameters", "layers_to_transform"})
    if (j.contains(f) && !j[f].is_null() && !j[f].empty())
      throw UnsupportedError(cfg_path + ": '" + std::string(f) + "' is not supported yet",
                             "train LoRA on the attention and dense MLP projections");
  for (const char* f : {"rank_pattern", "alpha_pattern"})
    if (j.contains(f) && j[f].is_object() && !j[f].empty())
      throw UnsupportedError(cfg_path + ": per-module '" + std::string(f) + "' is not supported yet");
  LoraConfig c;
  if (!field("r").is_number_integer()) throw ConfigError(cfg_path + ": field 'r' must be an integer");
  c.rank = field("r").get<int64_t>();
  c.alpha = field("lora_alpha").get<double>();
  c.dropout = j.value("lora_dropout", 0.0);
  c.rslora = j.value("use_rslora", false);
  // target_modules is a list of module-name suffixes, or a string that must full-match the module name (PEFT).
  const Json& tm = field("target_modules");
  std::regex pattern;
  const bool is_regex = tm.is_string();
  if (is_regex) {
    try {
      pattern = std::regex(tm.get<std::string>());
    } catch (const std::regex_error& e) {
      throw ConfigError(cfg_path + ": target_modules is not a valid regex: " + e.what());
    }
    c.targets.fill(true);
  } else {
    std::string list;
    for (const Json& m : tm) list += (list.empty() ? "" : ",") + m.get<std::string>();
    try {
      c.targets = lora_targets_parse(list);
    } catch (const ConfigError&) {
      throw UnsupportedError(cfg_path + ": target_modules " + tm.dump() + " include modules tune cannot train",
                             "tune targets q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    }
  }

  LoraAdapter a = LoraAdapter::init(model.config, c, 0);
  if (is_regex) {
    std::array<bool, kLoraTargets> seen{};
    for (size_t l = 0; l < a.layers.size(); ++l)
      for (int t = 0; t < kLoraTargets; ++t) {
        LoraWeights& w = a.layers[l][size_t(t)];
        const std::string name =
            lora_peft_module(model, int64_t(l), LoraTarget(t)).substr(std::string("base_model.model.").size());
        if (w.defined() && !std::regex_match(name, pattern)) w = LoraWeights();
        seen[size_t(t)] |= w.defined();
      }
    a.config.targets = seen;
  }
  const SafetensorsFile f(st_path);
  size_t used = 0;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      LoraWeights& w = a.layers[l][size_t(t)];
      if (!w.defined()) continue;
      const std::string m = lora_peft_module(model, int64_t(l), LoraTarget(t));
      for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".lora_A.weight", &w.A}, {".lora_B.weight", &w.B}}) {
        // PEFT may also save the adapter name in the key ("lora_A.default.weight").
        std::string key = m + suffix;
        if (!f.entries().count(key)) key = m + std::string(suffix).insert(7, ".default");
        auto it = f.entries().find(key);
        if (it == f.entries().end())
          throw FormatError(st_path + ": tensor '" + m + suffix + "' is missing",
                            "the adapter was trained for another model or other target modules");
        if (it->second.shape != dst->shape())
          throw ConfigError(st_path + ": tensor '" + key + "' has shape " + it->second.shape.str() + ", expected " +
                                dst->shape().str(),
                            "the adapter was trained for another model or another rank");
        *dst = it->second.tensor.to(DType::F32);
        ++used;
      }
    }
  }
  if (used != f.entries().size())
    throw FormatError(st_path + ": " + std::to_string(f.entries().size() - used) +
                          " tensors do not belong to the model's target modules",
                      "the adapter was trained for another model or has layers tune does not train");
  return a;
}

}  // namespace tune
