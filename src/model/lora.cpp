// LoRA adapter allocation, PEFT initialization and target names.
#include "model/lora.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"

namespace tune {

namespace {
const char* kShort[kLoraTargets] = {
    "q",   "k", "v",   "o", "gate", "up",          "down",      "experts_gate_up", "experts_down",
    "qkv", "z", "out", "a", "b",    "shared_gate", "shared_up", "shared_down"};
const char* kModule[kLoraTargets] = {"q_proj",    "k_proj",    "v_proj",       "o_proj",    "gate_proj",
                                     "up_proj",   "down_proj", "gate_up_proj", "down_proj", "in_proj_qkv",
                                     "in_proj_z", "out_proj",  "in_proj_a",    "in_proj_b", "gate_proj",
                                     "up_proj",   "down_proj"};
}  // namespace

const char* lora_target_short(LoraTarget t) { return kShort[int(t)]; }
const char* lora_target_module(LoraTarget t) { return kModule[int(t)]; }

std::array<bool, kLoraTargets> lora_targets_parse(const std::string& list) {
  std::array<bool, kLoraTargets> on{};
  std::stringstream ss(list);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item == "all" || item == "experts" || item == "shared") {
      for (int i = 0; i < kLoraTargets; ++i) {
        const bool shared = i >= int(LoraTarget::SharedGate);
        if (item == "all" || (item == "experts" && lora_target_is_expert(LoraTarget(i))) ||
            (item == "shared" && shared))
          on[size_t(i)] = true;
      }
      any = true;
      continue;
    }
    bool found = false;
    for (int i = 0; i < kLoraTargets; ++i) {
      if (lora_target_is_expert(LoraTarget(i))) continue;
      if (item == kShort[i] || item == kModule[i]) on[size_t(i)] = found = any = true;
    }
    if (!found)
      throw ConfigError("--target: unknown LoRA target '" + item + "'",
                        "use a list of q,k,v,o,gate,up,down,experts,qkv,z,out,a,b,shared (or shared_gate, "
                        "shared_up, shared_down) or all");
  }
  if (!any) throw ConfigError("--target: no LoRA target given", "e.g. --target q,k,v,o,gate,up,down");
  return on;
}

double LoraConfig::scale() const { return rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank); }

std::pair<int64_t, int64_t> LoraAdapter::target_shape(const ModelConfig& c, int64_t layer, LoraTarget t) {
  const LayerSpec& ls = c.layers[size_t(layer)];
  const bool attn = ls.mixer != MixerKind::GatedDeltaNet, dense = ls.ffn == FfnKind::Dense;
  const bool shared = !dense && c.shared_expert_intermediate_size > 0;
  const int64_t H = c.hidden_size, I = c.intermediate_size, Ish = c.shared_expert_intermediate_size;
  const int64_t key_dim = c.linear_num_key_heads * c.linear_key_head_dim,
                value_dim = c.linear_num_value_heads * c.linear_value_head_dim, nV = c.linear_num_value_heads;
  constexpr std::pair<int64_t, int64_t> none{0, 0};
  switch (t) {
    case LoraTarget::LinQkv:
      return !attn ? std::pair{H, 2 * key_dim + value_dim} : none;
    case LoraTarget::LinZ:
      return !attn ? std::pair{H, value_dim} : none;
    case LoraTarget::LinOut:
      return !attn ? std::pair{value_dim, H} : none;
    case LoraTarget::LinA:
    case LoraTarget::LinB:
      return !attn ? std::pair{H, nV} : none;
    case LoraTarget::SharedGate:
    case LoraTarget::SharedUp:
      return shared ? std::pair{H, Ish} : none;
    case LoraTarget::SharedDown:
      return shared ? std::pair{Ish, H} : none;
    case LoraTarget::Q: return attn ? std::pair{H, c.q_dim(ls.mixer)} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::K:
    case LoraTarget::V: return attn ? std::pair{H, c.kv_dim()} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::O: return attn ? std::pair{c.num_heads * c.head_dim, H} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::Gate:
    case LoraTarget::Up: return dense ? std::pair{H, I} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::Down: return dense ? std::pair{I, H} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::ExpertsGateUp:
      return !dense ? std::pair{H, 2 * c.moe_intermediate_size} : std::pair<int64_t, int64_t>{0, 0};
    case LoraTarget::ExpertsDown:
      return !dense ? std::pair{c.moe_intermediate_size, H} : std::pair<int64_t, int64_t>{0, 0};
  }
  return {0, 0};
}

LoraAdapter LoraAdapter::init(const ModelConfig& model, const LoraConfig& config, uint64_t seed) {
  if (config.rank <= 0) throw ConfigError("--lora-r must be positive, got " + std::to_string(config.rank));
  if (config.dropout < 0 || config.dropout >= 1) throw ConfigError("--lora-dropout must be in [0, 1)");
  LoraAdapter a;
  a.config = config;
  a.layers.resize(size_t(model.num_layers));
  Rng rng(seed);
  const int64_t r = config.rank;
  for (int64_t l = 0; l < model.num_layers; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!config.targets[size_t(t)]) continue;
      const auto [in, out] = target_shape(model, l, LoraTarget(t));
      if (in == 0) continue;
      LoraWeights& w = a.layers[size_t(l)][size_t(t)];
      if (lora_target_is_expert(LoraTarget(t))) {
        const int64_t E = model.num_experts;
        w.A = Tensor::empty(DType::F32, {E, r, in});
        w.B = Tensor::zeros(DType::F32, {E, out, r});
      } else {
        w.A = Tensor::empty(DType::F32, {r, in});
        w.B = Tensor::zeros(DType::F32, {out, r});
      }
      const float bound = float(1.0 / std::sqrt(double(in)));
      for (int64_t i = 0; i < w.A.numel(); ++i) w.A.f32()[i] = (2.0f * rng.uniform() - 1.0f) * bound;
      w.dA = Tensor::zeros(DType::F32, w.A.shape());
      w.dB = Tensor::zeros(DType::F32, w.B.shape());
    }
  }
  return a;
}

void LoraAdapter::zero_grad() {
  for (auto& layer : layers)
    for (LoraWeights& w : layer)
      if (w.defined()) {
        std::memset(w.dA.data(), 0, w.dA.nbytes());
        std::memset(w.dB.data(), 0, w.dB.nbytes());
      }
}

int64_t LoraAdapter::num_parameters() const {
  int64_t n = 0;
  for (const auto& layer : layers)
    for (const LoraWeights& w : layer)
      if (w.defined()) n += w.A.numel() + w.B.numel();
  return n;
}

}  // namespace tune
