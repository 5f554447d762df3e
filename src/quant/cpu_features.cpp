// cpuid through __builtin_cpu_supports; TUNE_SIMD read once.
#include "quant/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace tune {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = __builtin_cpu_supports("f16c");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
    c.avxvnni = __builtin_cpu_supports("avxvnni");
#endif
    return c;
  }();
  return f;
}

SimdLevel simd_level_supported() {
  static const SimdLevel level = [] {
    const CpuFeatures& c = cpu_features();
    SimdLevel best = SimdLevel::Scalar;
    if (c.avx2 && c.fma && c.f16c) best = SimdLevel::Avx2;
    if (best == SimdLevel::Avx2 && c.avx512f && c.avx512bw && c.avx512vl && c.avx512vnni)
      best = SimdLevel::Avx512;
    return best;
  }();
  return level;
}

namespace {

SimdLevel env_cap() {
  const char* cap = std::getenv("TUNE_SIMD");
  if (cap && !std::strcmp(cap, "scalar")) return SimdLevel::Scalar;
  if (cap && !std::strcmp(cap, "avx2")) return SimdLevel::Avx2;
  return SimdLevel::Avx512;
}

std::atomic<int> g_cap{int(SimdLevel::Avx512)};

}  // namespace

SimdLevel simd_level() {
  static const SimdLevel env = env_cap();
  return SimdLevel(std::min({int(simd_level_supported()), int(env), g_cap.load(std::memory_order_relaxed)}));
}

void set_simd_level(SimdLevel cap) {
  g_cap.store(int(cap), std::memory_order_relaxed);
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar:
      return "scalar";
    case SimdLevel::Avx2:
      return "avx2";
    case SimdLevel::Avx512:
      return "avx512";
  }
  return "?";
}

}  // namespace tune
