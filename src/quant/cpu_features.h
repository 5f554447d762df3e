// The x86 SIMD features the fast CPU paths select from at run time (cpuid through the compiler's builtins),
// so the build flags stay portable: kernels are compiled per function with __attribute__((target(...))). The
// environment variable TUNE_SIMD=scalar|avx2|avx512 caps the level (tests compare every level with the scalar
// code; benchmarks can measure each).
#pragma once

namespace tune {

enum class SimdLevel { Scalar, Avx2, Avx512 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;              // Haswell and later
  bool avx512f = false, avx512bw = false, avx512vl = false;  // Skylake-X and later
  bool avx512vnni = false;                                   // Cascade Lake and later
  bool avxvnni = false;  // Alder Lake and later (VNNI on 256-bit registers)
};

const CpuFeatures& cpu_features();

// The best level the CPU runs: Avx512 needs avx512f/bw/vl/vnni, Avx2 needs avx2/fma/f16c.
SimdLevel simd_level_supported();
// The level in use: the supported one, capped by TUNE_SIMD and by set_simd_level (tests run each level).
SimdLevel simd_level();
void set_simd_level(SimdLevel cap);
const char* simd_level_name(SimdLevel level);

}  // namespace tune
