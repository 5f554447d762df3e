// Declarations of the generated Unicode tables (unicode_tables.cpp, made by tools/gen_unicode_tables.py).
// Only unicode.cpp reads them directly; everything else goes through the accessors in unicode.h.
#pragma once

#include <cstdint>

namespace tune::unicode_tables {

// Two-stage lookup: stage2[(stage1[cp >> kBlockShift] << kBlockShift) + (cp & kBlockMask)].
inline constexpr int kBlockShift = 7;
inline constexpr uint32_t kBlockMask = (1u << kBlockShift) - 1;
extern const uint16_t kFlagsStage1[];
extern const uint8_t kFlagsStage2[];
extern const uint16_t kCccStage1[];
extern const uint8_t kCccStage2[];
// Full canonical decompositions (Hangul excluded): kDecompKeys sorted, the i-th expands to
// kDecompData[kDecompOffsets[i] .. kDecompOffsets[i + 1]).
extern const int kDecompCount;
extern const uint32_t kDecompKeys[];
extern const uint16_t kDecompOffsets[];
extern const uint32_t kDecompData[];
// Primary compositions (Hangul excluded): kCompPairs sorted, (first << 21 | second) -> kCompResults.
extern const int kCompCount;
extern const uint64_t kCompPairs[];
extern const uint32_t kCompResults[];

}  // namespace tune::unicode_tables
