// The inference forward pass (fp32 reference on the CPU): ids -> logits, one straight sequence of op calls per
// block kind. Qwen2/2.5, Qwen3 and Qwen3-MoE blocks (full attention + SwiGLU or MoE FFN).
#pragma once

#include <cstdint>
#include <span>

#include "model/model.h"

namespace tune {

// ids (T) -> logits (T, V). Positions are 0..T-1 (one document).
Tensor model_logits(const Model& model, std::span<const int32_t> ids);

}  // namespace tune
