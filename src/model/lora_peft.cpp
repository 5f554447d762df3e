// PEFT adapter files: the name mapping and the config fields PEFT reads.
#include "model/lora_peft.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>

#include "io/json.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace tune {

std::string lora_peft_module(const Model& model, int64_t layer, LoraTarget t, bool both_expert_targets) {
  const bool attn = t == LoraTarget::Q || t == LoraTarget::K || t == LoraTarget::V || t == LoraTarget::O;
  const std::string prefix = model.report.hf_prefix.empty() ? "model." : model.report.hf_prefix;
  const std::string base = "base_model.model." + prefix + "layers." + std::to_string(layer);
  if (t == LoraTarget::ExpertsGateUp) return base + (both_expert_targets ? ".mlp.experts.base_layer" : ".mlp.experts");
  if (t == LoraTarget::ExpertsDown) return base + ".mlp.experts";
  const int ti = int(t);
  const char* parent = attn                                ? ".self_attn."
                       : ti >= int(LoraTarget::SharedGate) ? ".mlp.shared_expert."
                       : ti >= int(LoraTarget::LinQkv)     ? ".linear_attn."
                                                           : ".mlp.";
  return base + parent + lora_target_module(t);
}

namespace {

bool is_expert(int t) {
  return lora_target_is_expert(LoraTarget(t));
}

bool both_experts(const LoraConfig& c) {
  return c.targets[size_t(LoraTarget::ExpertsGateUp)] && c.targets[size_t(LoraTarget::ExpertsDown)];
}

// B (E, out, r) <-> PEFT's (out, r*E) with column j*E + e.
Tensor expert_b_to_peft(const Tensor& b) {
  const int64_t E = b.size(0), out = b.size(1), r = b.size(2);
  Tensor p = Tensor::empty(DType::F32, {out, r * E});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < r; ++j) p.f32()[o * r * E + j * E + e] = b.f32()[(e * out + o) * r + j];
  return p;
}

Tensor expert_b_from_peft(const Tensor& p, int64_t E) {
  const int64_t out = p.size(0), r = p.size(1) / E;
  Tensor b = Tensor::empty(DType::F32, {E, out, r});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < r; ++j) b.f32()[(e * out + o) * r + j] = p.f32()[o * r * E + j * E + e];
  return b;
}

}  // namespace

NamedTensors lora_peft_tensors(const LoraAdapter& adapter, const Model& model, bool grads) {
  NamedTensors tensors;
  const bool both = both_experts(adapter.config);
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) continue;
      const std::string m = lora_peft_module(model, int64_t(l), LoraTarget(t), both);
      const Tensor& a = grads ? w.dA : w.A;
      const Tensor& b = grads ? w.dB : w.B;
      if (is_expert(t)) {
        tensors.emplace_back(m + ".lora_A.weight", a.reshape({a.size(0) * a.size(1), a.size(2)}));
        tensors.emplace_back(m + ".lora_B.weight", expert_b_to_peft(b));
      } else {
        tensors.emplace_back(m + ".lora_A.weight", a);
        tensors.emplace_back(m + ".lora_B.weight", b);
      }
    }
  }
  return tensors;
}

void lora_save_peft(const LoraAdapter& adapter, const Model& model, const std::string& dir,
                    const std::string& base_model_name) {
  fs::create_directories(dir);
  const NamedTensors tensors = lora_peft_tensors(adapter, model);
  // target_modules: the module names when every layer that has a targeted linear carries LoRA on it, else a
  // regex naming each adapted module exactly (PEFT full-matches a string against module names). MoE models always
  // get the regex: PEFT rewrites a plain gate/up/down_proj list into expert parameters for them.
  Json targets = Json::array();
  Json params = Json::array();
  for (int t = 0; t < kLoraTargets; ++t) {
    if (!adapter.config.targets[size_t(t)]) continue;
    bool present = false;  // the model has this linear somewhere (no "in_proj_qkv" for a Qwen3 model)
    for (const auto& layer : adapter.layers) present |= layer[size_t(t)].defined();
    if (!present) continue;
    if (is_expert(t)) {
      params.push_back(std::string("mlp.experts.") + lora_target_module(LoraTarget(t)));
    } else if (std::find(targets.begin(), targets.end(), Json(lora_target_module(LoraTarget(t)))) ==
               targets.end()) {
      targets.push_back(lora_target_module(LoraTarget(t)));
    }
  }
  bool holes = model.config.has_moe();
  std::string regex;
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (is_expert(t)) continue;
      const LoraWeights& w = adapter.layers[l][size_t(t)];
      if (!w.defined()) {
        holes |= adapter.config.targets[size_t(t)] &&
                 LoraAdapter::target_shape(model.config, int64_t(l), LoraTarget(t)).first > 0;
        continue;
      }
      const std::string m = lora_peft_module(model, int64_t(l), LoraTarget(t));
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
                    {"target_parameters", params.empty() ? Json(nullptr) : params},
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
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null() && !j["layers_to_transform"].empty())
    throw UnsupportedError(cfg_path + ": 'layers_to_transform' is not supported yet");
  // target_parameters: LoRA on the fused expert tensors, in the order PEFT nests them.
  std::vector<LoraTarget> expert_targets;
  if (j.contains("target_parameters") && j["target_parameters"].is_array()) {
    for (const Json& p : j["target_parameters"]) {
      const std::string name = p.is_string() ? p.get<std::string>() : p.dump();
      if (name == "mlp.experts.gate_up_proj") {
        expert_targets.push_back(LoraTarget::ExpertsGateUp);
      } else if (name == "mlp.experts.down_proj") {
        expert_targets.push_back(LoraTarget::ExpertsDown);
      } else {
        throw UnsupportedError(cfg_path + ": target_parameters entry '" + name + "' is not supported",
                               "tune trains mlp.experts.gate_up_proj and mlp.experts.down_proj");
      }
    }
    if (expert_targets.size() == 2 && expert_targets[0] != LoraTarget::ExpertsGateUp)
      throw UnsupportedError(cfg_path + ": target_parameters must list gate_up_proj before down_proj");
  }
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
    for (int t = 0; t < kLoraTargets; ++t) c.targets[size_t(t)] = !is_expert(t);
  } else {
    std::string list;
    for (const Json& m : tm) list += (list.empty() ? "" : ",") + m.get<std::string>();
    try {
      c.targets = lora_targets_parse(list);
    } catch (const ConfigError&) {
      throw UnsupportedError(
          cfg_path + ": target_modules " + tm.dump() + " include modules tune cannot train",
          "tune targets q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, "
          "in_proj_qkv, in_proj_z, out_proj, in_proj_a, in_proj_b");
    }
  }

  for (LoraTarget t : expert_targets) c.targets[size_t(t)] = true;
  LoraAdapter a = LoraAdapter::init(model.config, c, 0);
  if (is_regex) {
    std::array<bool, kLoraTargets> seen{};
    for (size_t l = 0; l < a.layers.size(); ++l)
      for (int t = 0; t < kLoraTargets; ++t) {
        if (is_expert(t)) continue;
        LoraWeights& w = a.layers[l][size_t(t)];
        const std::string name =
            lora_peft_module(model, int64_t(l), LoraTarget(t)).substr(std::string("base_model.model.").size());
        if (w.defined() && !std::regex_match(name, pattern)) w = LoraWeights();
        seen[size_t(t)] |= w.defined();
      }
    for (int t = 0; t < kLoraTargets; ++t)
      if (!is_expert(t)) a.config.targets[size_t(t)] = seen[size_t(t)];
  }
  const SafetensorsFile f(st_path);
  size_t used = 0;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      LoraWeights& w = a.layers[l][size_t(t)];
      if (!w.defined()) continue;
      const std::string m = lora_peft_module(model, int64_t(l), LoraTarget(t), expert_targets.size() == 2);
      const Shape want_a = is_expert(t) ? Shape{w.A.size(0) * w.A.size(1), w.A.size(2)} : w.A.shape();
      const Shape want_b = is_expert(t) ? Shape{w.B.size(1), w.B.size(2) * w.B.size(0)} : w.B.shape();
      for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".lora_A.weight", &w.A}, {".lora_B.weight", &w.B}}) {
        const bool is_a = dst == &w.A;
        // PEFT may also save the adapter name in the key ("lora_A.default.weight").
        std::string key = m + suffix;
        if (!f.entries().count(key)) key = m + std::string(suffix).insert(7, ".default");
        auto it = f.entries().find(key);
        if (it == f.entries().end())
          throw FormatError(st_path + ": tensor '" + m + suffix + "' is missing",
                            "the adapter was trained for another model or other target modules");
        const Shape& want = is_a ? want_a : want_b;
        if (it->second.shape != want)
          throw ConfigError(st_path + ": tensor '" + key + "' has shape " + it->second.shape.str() + ", expected " +
                                want.str(),
                            "the adapter was trained for another model or another rank");
        const Tensor t32 = it->second.tensor.to(DType::F32);
        if (!is_expert(t)) {
          *dst = t32;
        } else {
          *dst = is_a ? t32.reshape(dst->shape()) : expert_b_from_peft(t32, model.config.num_experts);
        }
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
