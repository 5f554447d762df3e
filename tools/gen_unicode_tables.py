#!/usr/bin/env python3
"""Generates src/tokenizer/unicode_tables.cpp: the Unicode data of the tokenizer, i.e. the character classes of the
pre-tokenizer regex (\\p{L}, \\p{M}, \\p{N}, \\s) and the NFC data (canonical combining classes, decompositions,
primary compositions, quick-check flags).

Tokenization must equal Hugging Face `tokenizers`, which uses two Unicode versions at once: its regex engine
(Oniguruma, in tokenizers 0.23.2) knows Unicode 16.0, its NFC normalizer (unicode-normalization-alignments 0.1.12)
Unicode 9.0. Hence:
  - the classes are read from tests/data/tokenizer/unicode_probe.json, which tools/reference/make_tokenizer_refs.py
    --probe writes by running the tokenizers regex over every code point (so they are the reference's own);
  - the NFC data come from Python's unicodedata, restricted to characters assigned by --nfc-version (default 9.0);
    the characters' ages come from ICU (libicuuc, through ctypes), as unicodedata has none. Newer characters are
    inert starters for NFC, as they are in the reference.
Stdlib + an installed libicuuc. Deterministic for given inputs.
Usage: python3 tools/gen_unicode_tables.py [--probe FILE] [--nfc-version 9.0] [OUTPUT]
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import unicodedata as ud

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
kMaxCp = 0x110000
kBlock = 128  # code points per second-stage block; 128 keeps the generated file small

# Bit flags, mirrored in src/tokenizer/unicode.h (kCharLetter ...).
kLetter, kNumber, kMark, kSpace, kNfcCheck = 1, 2, 4, 8, 16
kProbeClass = {"L": kLetter, "N": kNumber, "M": kMark, "WS": kSpace, "P": 0}


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def icu_age():
    """cp -> (major, minor) of the Unicode version that assigned it, from ICU's u_charAge."""
    for name in [ctypes.util.find_library("icuuc")] + [f"libicuuc.so.{v}" for v in range(80, 60, -1)]:
        try:
            lib = ctypes.CDLL(name)
            break
        except (OSError, TypeError):
            continue
    else:
        raise SystemExit("gen_unicode_tables: libicuuc not found (Debian: libicu72)")
    suffix = ""
    if not hasattr(lib, "u_charAge"):  # ICU exports versioned names, e.g. u_charAge_72
        suffix = "_" + next(str(v) for v in range(80, 60, -1) if hasattr(lib, f"u_charAge_{v}"))
    fn = getattr(lib, "u_charAge" + suffix)
    fn.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_uint8 * 4)]
    version_fn = getattr(lib, "u_getUnicodeVersion" + suffix)
    version_fn.argtypes = [ctypes.POINTER(ctypes.c_uint8 * 4)]
    v = (ctypes.c_uint8 * 4)()
    version_fn(ctypes.byref(v))
    icu_unicode = (v[0], v[1])

    def age(cp):
        out = (ctypes.c_uint8 * 4)()
        fn(cp, ctypes.byref(out))
        return (out[0], out[1])

    return age, icu_unicode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", default=os.path.join(ROOT, "tests", "data", "tokenizer", "unicode_probe.json"))
    ap.add_argument("--nfc-version", default="9.0", help="Unicode version of the reference's NFC tables")
    ap.add_argument("output", nargs="?", default=os.path.join(ROOT, "src", "tokenizer", "unicode_tables.cpp"))
    args = ap.parse_args()
    nfc_version = tuple(int(x) for x in args.nfc_version.split("."))
    age, icu_unicode = icu_age()
    if tuple(int(x) for x in ud.unidata_version.split(".")[:2]) < nfc_version or icu_unicode < nfc_version:
        raise SystemExit("gen_unicode_tables: Python's and ICU's Unicode must be at least --nfc-version")

    with open(args.probe, encoding="utf-8") as f:
        probe = json.load(f)
    classes = [0] * kMaxCp
    for lo, hi, k in probe["class_runs"]:
        for cp in range(lo, hi + 1):
            classes[cp] = kProbeClass[k]
    # The probe cannot tell CR and LF from other characters (its contexts end in newlines); both are \s.
    classes[0x0A] = classes[0x0D] = kSpace

    known = [not is_surrogate(cp) and age(cp) != (0, 0) and age(cp) <= nfc_version for cp in range(kMaxCp)]

    def ccc(cp):
        return ud.combining(chr(cp)) if known[cp] else 0

    def canonical_decomposition(cp):
        """One step of the canonical decomposition, or None (Hangul is algorithmic and handled in C++)."""
        d = ud.decomposition(chr(cp)) if known[cp] else ""
        if not d or d.startswith("<"):
            return None
        return [int(x, 16) for x in d.split()]

    def full_decomposition(cp):
        parts = canonical_decomposition(cp)
        return [cp] if parts is None else [x for p in parts for x in full_decomposition(p)]

    # Primary composites: two-part canonical decompositions that NFC recomposes (this leaves out the
    # composition exclusions, singletons and non-starter decompositions without needing CompositionExclusions.txt).
    compositions, second_of_pair = [], set()
    for cp in range(kMaxCp):
        parts = canonical_decomposition(cp)
        if parts and len(parts) == 2 and ud.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chr(cp):
            compositions.append((parts[0], parts[1], cp))
            second_of_pair.add(parts[1])
    compositions.sort()

    flags, cccs, decomps = [0] * kMaxCp, [0] * kMaxCp, []
    for cp in range(kMaxCp):
        cccs[cp] = ccc(cp)
        full = full_decomposition(cp)
        if full != [cp]:
            decomps.append((cp, full))
        # NFC_Quick_Check is No when NFC changes the character alone, Maybe when it can be the second half of a
        # composition (Hangul vowels and trailing consonants included). Such characters, and all non-starters,
        # send the normalizer to its slow path.
        quick_no = known[cp] and ud.normalize("NFC", chr(cp)) != chr(cp)
        quick_maybe = cp in second_of_pair or (0x1161 <= cp < 0x1176) or (0x11A8 <= cp < 0x11C3)
        flags[cp] = classes[cp] | (kNfcCheck if cccs[cp] != 0 or quick_no or quick_maybe else 0)
    assert all(cp >= 0x300 for cp in range(kMaxCp) if flags[cp] & kNfcCheck), "unicode.cpp's fast path needs this"

    def wrap(values, per_line=24):
        return ["    " + ", ".join(str(v) for v in values[i:i + per_line]) + "," for i in range(0, len(values), per_line)]

    def two_stage(values, name):
        blocks, index, stage2 = {}, [], []
        for start in range(0, kMaxCp, kBlock):
            block = tuple(values[start:start + kBlock])
            if block not in blocks:
                blocks[block] = len(blocks)
                stage2.extend(block)
            index.append(blocks[block])
        assert len(blocks) < 65536
        return ([f"const uint16_t k{name}Stage1[{len(index)}] = {{"] + wrap(index) +
                ["};", f"const uint8_t k{name}Stage2[{len(stage2)}] = {{"] + wrap(stage2) + ["};", ""])

    version = (f"Classes: tokenizers {probe.get('tokenizers', '?')} regex. NFC: Unicode {args.nfc_version} "
               f"(Python unicodedata {ud.unidata_version}, ages from ICU {icu_unicode[0]}.{icu_unicode[1]})")
    offsets, data = [], []
    for _, full in decomps:
        offsets.append(len(data))
        data.extend(full)
    offsets.append(len(data))
    lines = [
        "// Generated by tools/gen_unicode_tables.py. Do not edit: rerun the script. Read through unicode.h.",
        "// " + version + ".",
        '#include "tokenizer/unicode_tables.h"',
        "",
        "// clang-format off",
        "namespace tune::unicode_tables {",
        "",
        f'static_assert(kBlockShift == {kBlock.bit_length() - 1}, "rerun tools/gen_unicode_tables.py");',
        "",
    ]
    lines += two_stage(flags, "Flags") + two_stage(cccs, "Ccc")
    lines += [f"const int kDecompCount = {len(decomps)};", f"const uint32_t kDecompKeys[{len(decomps)}] = {{"]
    lines += wrap([cp for cp, _ in decomps], 12)
    lines += ["};", f"const uint16_t kDecompOffsets[{len(offsets)}] = {{"] + wrap(offsets)
    lines += ["};", f"const uint32_t kDecompData[{len(data)}] = {{"] + wrap(data, 12) + ["};", ""]
    lines += [f"const int kCompCount = {len(compositions)};",
              "// (first << 21 | second), sorted, and the composite of each pair.",
              f"const uint64_t kCompPairs[{len(compositions)}] = {{"]
    lines += wrap([(a << 21) | b for a, b, _ in compositions], 8)
    lines += ["};", f"const uint32_t kCompResults[{len(compositions)}] = {{"] + wrap([c for _, _, c in compositions], 12)
    lines += ["};", "", "}  // namespace tune::unicode_tables", ""]
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.output}: {version}; {len(decomps)} decompositions, {len(compositions)} compositions")


if __name__ == "__main__":
    main()
