// Replay mixing: `--mix FILE:FRACTION` makes FRACTION of the final examples come from FILE (relative to the
// total), sampled deterministically by seed, with repeats when the file is too small, then interleaved with
// the main data by a seeded shuffle. Depends on core/rng.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"

namespace tune {

struct MixSpec {
  std::string path;
  double fraction = 0;  // share of the final set, in (0, 1)
};

// "FILE:FRACTION", split at the last ':' (so paths may hold one); ConfigError on a bad fraction.
MixSpec mix_spec_parse(const std::string& spec);

// How many examples each mix contributes when the main data has main_count: the total is
// main_count / (1 - sum(fractions)) and mix i gets round(fractions[i] * total). ConfigError unless every
// fraction is in (0, 1) and they add up to less than 1.
std::vector<int64_t> mix_counts(int64_t main_count, const std::vector<double>& fractions);

// `count` indices into [0, available), ascending: every index count / available times, plus
// count % available distinct indices drawn without replacement (so a small file repeats evenly).
std::vector<int64_t> mix_sample(int64_t available, int64_t count, Rng& rng);

// A uniformly random permutation of [0, n) (Fisher-Yates), the same on every platform for the same Rng.
std::vector<int64_t> seeded_permutation(int64_t n, Rng& rng);

}  // namespace tune
