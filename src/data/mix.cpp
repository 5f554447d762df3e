// Replay mix counts and seeded sampling (see mix.h).
#include "data/mix.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace tune {

MixSpec mix_spec_parse(const std::string& spec) {
  const char* hint =
      "--mix FILE:FRACTION, e.g. --mix replay.jsonl:0.1 for 10% of the examples from replay.jsonl";
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw ConfigError("--mix '" + spec + "': expected FILE:FRACTION", hint);
  MixSpec m;
  m.path = spec.substr(0, colon);
  const std::string value = spec.substr(colon + 1);
  try {
    size_t n = 0;
    m.fraction = std::stod(value, &n);
    if (n != value.size()) throw std::invalid_argument(value);
  } catch (const std::exception&) {
    throw ConfigError("--mix '" + spec + "': fraction '" + value + "' is not a number", hint);
  }
  if (!(m.fraction > 0 && m.fraction < 1))
    throw ConfigError("--mix '" + spec + "': the fraction must be between 0 and 1", hint);
  return m;
}

std::vector<int64_t> mix_counts(int64_t main_count, const std::vector<double>& fractions) {
  double sum = 0;
  for (double f : fractions) {
    if (!(f > 0 && f < 1)) throw ConfigError("mix fraction " + std::to_string(f) + " is not between 0 and 1");
    sum += f;
  }
  if (sum >= 1)
    throw ConfigError("the mix fractions add up to " + std::to_string(sum),
                      "they are shares of the final set and must leave room for the main data (sum < 1)");
  const double total = static_cast<double>(main_count) / (1 - sum);
  std::vector<int64_t> counts;
  for (double f : fractions) counts.push_back(std::llround(f * total));
  return counts;
}

std::vector<int64_t> seeded_permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(static_cast<uint64_t>(i + 1))]);
  return p;
}

std::vector<int64_t> mix_sample(int64_t available, int64_t count, Rng& rng) {
  TUNE_CHECK(count >= 0 && (available > 0 || count == 0)) << "sampling " << count << " of " << available;
  std::vector<int64_t> out;
  if (count == 0) return out;
  out.reserve(count);
  for (int64_t r = 0; r < count / available; ++r)
    for (int64_t i = 0; i < available; ++i) out.push_back(i);
  const std::vector<int64_t> perm = seeded_permutation(available, rng);
  out.insert(out.end(), perm.begin(), perm.begin() + count % available);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace tune
