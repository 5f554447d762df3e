// NFC normalization (UAX #15: canonical decomposition, canonical ordering, canonical composition), UTF-8
// encoding and lossy repair. Tables: unicode_tables.cpp.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <vector>

namespace tune {
namespace {

using namespace unicode_tables;

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const uint32_t* end = kDecompKeys + kDecompCount;
  const uint32_t* it = std::lower_bound(kDecompKeys, end, cp);
  if (it == end || *it != cp) {
    out.push_back(cp);
    return;
  }
  const size_t i = it - kDecompKeys;
  out.insert(out.end(), kDecompData + kDecompOffsets[i], kDecompData + kDecompOffsets[i + 1]);
}

// Ill-formed input bytes travel through the segment as kRawByte | byte: starters that compose with nothing.
constexpr uint32_t kRawByte = 0x80000000u;

uint8_t ccc_of(uint32_t cp) {
  return cp < 0x110000 ? unicode_ccc(cp) : 0;
}

// The primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if ((a | b) & kRawByte) return 0;
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const uint64_t key = (static_cast<uint64_t>(a) << 21) | b;
  const uint64_t* end = kCompPairs + kCompCount;
  const uint64_t* it = std::lower_bound(kCompPairs, end, key);
  return (it != end && *it == key) ? kCompResults[it - kCompPairs] : 0;
}

// Normalizes the well-formed segment `seg` (which starts at a character with a composition boundary before it
// and ends before one) and appends it to `out`.
void nfc_segment(std::string_view seg, std::string& out) {
  std::vector<uint32_t> cps;
  const auto* p = reinterpret_cast<const unsigned char*>(seg.data());
  for (size_t i = 0; i < seg.size();) {
    const Utf8Char c = utf8_decode(p + i, seg.size() - i);
    if (c.cp == kInvalidCodepoint) {
      for (uint32_t k = 0; k < c.len; ++k) cps.push_back(kRawByte | p[i + k]);
    } else {
      decompose(c.cp, cps);
    }
    i += c.len;
  }
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (ccc_of(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc_of(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](uint32_t a, uint32_t b) { return ccc_of(a) < ccc_of(b); });
    i = j;
  }
  // Canonical composition: a character joins the last starter unless a character of equal or higher class
  // (or any starter) stands between them.
  size_t starter = 0;
  bool have_starter = ccc_of(cps[0]) == 0;
  int last_class = have_starter ? 0 : 256;
  size_t n_out = 1;
  for (size_t i = 1; i < cps.size(); ++i) {
    const uint32_t c = cps[i];
    const int cc = ccc_of(c);
    if (have_starter && (last_class < cc || last_class == 0)) {
      if (const uint32_t composite = compose(cps[starter], c)) {
        cps[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = n_out;
      have_starter = true;
    }
    last_class = cc;
    cps[n_out++] = c;
  }
  for (size_t i = 0; i < n_out; ++i) {
    if (cps[i] & kRawByte) {
      out.push_back(static_cast<char>(cps[i] & 0xFF));
    } else {
      utf8_append(out, cps[i]);
    }
  }
}

}  // namespace

uint8_t unicode_ccc(uint32_t cp) {
  return kCccStage2[(static_cast<uint32_t>(kCccStage1[cp >> kBlockShift]) << kBlockShift) +
                    (cp & kBlockMask)];
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool unicode_nfc(std::string_view text, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  // Characters below U+0300 (lead byte < 0xCC) never change under NFC and are composition boundaries, so the
  // scan only decodes from there on.
  size_t copied = 0;    // text[0, copied) has been dealt with (appended to `out` once `changed`)
  size_t boundary = 0;  // start of the last character that has a composition boundary before it
  bool changed = false;
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0xCC) {
      if (p[i] < 0x80 || p[i] >= 0xC0) boundary = i;  // a character (or ill-formed byte) starts here
      ++i;
      continue;
    }
    const Utf8Char c = utf8_decode(p + i, n - i);
    if (c.cp == kInvalidCodepoint || !(unicode_flags(c.cp) & kCharNfcCheck)) {
      boundary = i;  // an ill-formed sequence is a starter that composes with nothing
      i += c.len;
      continue;
    }
    // A character NFC may change in context: normalize from the last boundary to the next one.
    size_t end = i + c.len;
    while (end < n) {
      const Utf8Char d = utf8_decode(p + end, n - end);
      if (d.cp == kInvalidCodepoint || !(unicode_flags(d.cp) & kCharNfcCheck)) break;
      end += d.len;
    }
    const std::string_view seg = text.substr(boundary, end - boundary);
    std::string normalized;
    nfc_segment(seg, normalized);
    if (normalized != seg) {
      if (!changed) {
        out.clear();
        out.reserve(n + 16);
        changed = true;
      }
      out.append(text.substr(copied, boundary - copied));
      out.append(normalized);
      copied = end;
    }
    boundary = end;
    i = end;
  }
  if (changed) out.append(text.substr(copied));
  return changed;
}

std::string unicode_nfc(std::string_view text) {
  std::string out;
  if (!unicode_nfc(text, out)) out.assign(text);
  return out;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < bytes.size();) {
    if (p[i] < 0x80) {
      out.push_back(static_cast<char>(p[i++]));
      continue;
    }
    const Utf8Char c = utf8_decode(p + i, bytes.size() - i);
    if (c.cp == kInvalidCodepoint) {
      out.append("\xEF\xBF\xBD");
    } else {
      out.append(bytes.substr(i, c.len));
    }
    i += c.len;
  }
  return out;
}

}  // namespace tune
