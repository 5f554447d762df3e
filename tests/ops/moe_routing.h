// Routings (T, k) for the MoE dispatch tests: k distinct experts per token with uneven loads (expert
// floor(E u^2) for uniform u favours low ids), and the experts e % 5 == 3 never chosen, so they own no rows,
// whenever enough others remain. Cheap enough for millions of slots.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace tune::test {

// Whether the experts e % 5 == 3 are left out ((E + 1) / 5 of the E have e % 5 == 3).
inline bool moe_routing_closes(int64_t E, int64_t k) {
  return E - (E + 1) / 5 >= k;
}

inline std::vector<int32_t> moe_routing(int64_t T, int64_t k, int64_t E, uint64_t seed) {
  const bool close = moe_routing_closes(E, k);
  Rng rng(seed);
  std::vector<int32_t> ex(static_cast<size_t>(T * k));
  for (int64_t t = 0; t < T; ++t) {
    int32_t* row = ex.data() + t * k;
    for (int64_t j = 0; j < k;) {
      const float u = rng.uniform();
      const auto e = int32_t(std::min(E - 1, int64_t(float(E) * u * u)));
      if ((close && e % 5 == 3) || std::find(row, row + j, e) != row + j) continue;
      row[j++] = e;
    }
  }
  return ex;
}

}  // namespace tune::test
