#!/usr/bin/env python3
"""Compose tests/data/tokenizer/corpus.txt: a project-own, deterministic, multilingual text of >= 1 MB for checking
the tokenizer byte for byte against Hugging Face `tokenizers` (tools/reference/make_tokenizer_refs.py) and for its
benchmark (bench/bench_tokenizer.cpp).

The text is meaningless: words are drawn from word lists this script builds from Unicode ranges (Latin with
diacritics, composed and decomposed, Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, CJK, kana, Hangul), mixed with
code snippets, emoji (ZWJ sequences, skin tones, flags, keycaps), stacked combining marks, whitespace and newline runs
(tabs, CRLF, Unicode spaces), contractions in every letter case, numbers, punctuation runs and the Qwen special-token
strings (whole, partial and adjacent). Only characters assigned by Unicode 13 are used, so the tables of any recent
implementation agree on them.

Stdlib only. Same output for the same SEED on any Python >= 3.8.
Run:  python3 tools/reference/make_corpus.py [--out tests/data/tokenizer/corpus.txt] [--bytes 1200000]
"""

import argparse
import hashlib
import os
import random
import unicodedata

SEED = 20250101

# ---------------------------------------------------------------------------------------------------------------------
# Alphabets


def chars(*ranges):
    """The characters of inclusive code point ranges. The ranges below are fully assigned since Unicode 13 or
    earlier; the list is written out rather than filtered with unicodedata, so the output does not depend on the
    Python version."""
    return [chr(cp) for lo, hi in ranges for cp in range(lo, hi + 1)]


LATIN_LOWER = "abcdefghijklmnopqrstuvwxyz"
LATIN_ACCENTED = ("àáâãäåāăąçćĉċčďđèéêëēĕėęěĝğġģĥħìíîïĩīĭįıĵķĺļľŀłñńņňòóôõöøōŏőœŕŗřśŝşšţťŧùúûüũūŭůűųŵýÿŷźżž"
                  "ǎǐǒǔǖǘǚǜșțạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹß")
GREEK = chars((0x3B1, 0x3C9)) + list("άέήίόύώϊϋΐΰ")
GREEK_UPPER = chars((0x391, 0x3A1), (0x3A3, 0x3A9))
CYRILLIC = chars((0x430, 0x44F)) + list("ёйїієґў")
CYRILLIC_UPPER = chars((0x410, 0x42F))
ARABIC = chars((0x628, 0x63A), (0x641, 0x64A))
ARABIC_MARKS = chars((0x64B, 0x652))
HEBREW = chars((0x5D0, 0x5EA))
HEBREW_MARKS = chars((0x5B0, 0x5BC))
DEVANAGARI_CONS = chars((0x915, 0x939))
DEVANAGARI_VOWELS = chars((0x905, 0x914))
DEVANAGARI_SIGNS = chars((0x93E, 0x94C)) + ["\u094D", "\u0902", "\u093C"]
THAI_CONS = chars((0xE01, 0xE2E))
THAI_MARKS = ["\u0E31"] + chars((0xE34, 0xE3A), (0xE47, 0xE4E))
THAI_VOWELS = ["\u0E30", "\u0E32", "\u0E33", "\u0E40", "\u0E41", "\u0E42", "\u0E43", "\u0E44"]
HIRAGANA = chars((0x3041, 0x3096))
KATAKANA = chars((0x30A1, 0x30FA))
CJK_PUNCT = list("、。「」『』（）！？：；～・《》【】…　")
COMBINING = chars((0x300, 0x36F))
EMOJI = chars((0x1F600, 0x1F64F), (0x1F300, 0x1F5FF), (0x1F680, 0x1F6C5), (0x1F910, 0x1F93E)) + list("✅✨❤☀☕⚡⭐")
SKIN_TONES = chars((0x1F3FB, 0x1F3FF))
ZWJ = "\u200D"
ZWJ_SEQUENCES = ["👨\u200d👩\u200d👧\u200d👦", "👩\u200d💻", "👨🏽\u200d💻", "🏳️\u200d🌈", "🏴\u200d☠️", "👩🏿\u200d🔬",
                 "🧑\u200d🤝\u200d🧑", "❤️\u200d🔥", "😶\u200d🌫️", "🐻\u200d❄️", "👁️\u200d🗨️", "🧔🏻\u200d♂️"]
REGIONAL = chars((0x1F1E6, 0x1F1FF))
SPACES = ["\u00A0", "\u2002", "\u2003", "\u2009", "\u200A", "\u3000", "\u202F", "\u205F", "\u1680", "\u0085",
          "\u2028", "\u2029", "\x0b", "\x0c"]
NOT_SPACES = ["\u200B", "\u180E", "\u2060", "\uFEFF", "\x1c", "\x1d", "\x1e", "\x1f"]  # look like space, aren't \s
CONTROLS = ["\x01", "\x02", "\x07", "\x08", "\x1b", "\x7f", "\x80", "\x9f"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("¡¿«»“”‘’„‚‹›—–…·•§¶†‡©®™°±×÷")
NUMBER_CHARS = list("²³¹¼½¾⅓⅔ⅠⅡⅢⅣⅫⅰⅱⅲ①②③⑳") + chars((0x660, 0x669), (0x966, 0x96F), (0xE50, 0xE59), (0xFF10, 0xFF19))
FULLWIDTH = chars((0xFF21, 0xFF3A), (0xFF41, 0xFF5A))

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                  "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                  "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
SPECIAL_LOOKALIKES = ["<|im_start", "im_end|>", "<|IM_END|>", "< |im_end|>", "<|im_end |>", "<<|im_end|>>",
                      "<|endoftext|", "<thinking>", "</ think>", "<|im_start|im_end|>", "<|>", "<||>"]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]


def all_cases(s):
    """Every upper/lower-case variant of s ("'ll" -> 'll 'lL 'Ll 'LL)."""
    out = [""]
    for ch in s:
        out = [p + v for p in out for v in sorted({ch.lower(), ch.upper()})]
    return out


ALL_CONTRACTIONS = [v for c in CONTRACTIONS for v in all_cases(c)] + ["'ſ", "’s", "’ll", "''s", "'"]

# ---------------------------------------------------------------------------------------------------------------------
# Word lists


def make_words(rng, alphabet, n, lo=2, hi=9):
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def latin_word(rng):
    w = "".join(rng.choice(LATIN_LOWER if rng.random() < 0.8 else LATIN_ACCENTED) for _ in range(rng.randint(1, 11)))
    r = rng.random()
    if r < 0.15:
        w = w.capitalize()
    elif r < 0.18:
        w = w.upper()
    return w


def devanagari_word(rng):
    out = []
    for _ in range(rng.randint(1, 4)):
        out.append(rng.choice(DEVANAGARI_CONS) if rng.random() < 0.85 else rng.choice(DEVANAGARI_VOWELS))
        if rng.random() < 0.6:
            out.append(rng.choice(DEVANAGARI_SIGNS))
    return "".join(out)


def thai_word(rng):
    out = []
    for _ in range(rng.randint(2, 6)):
        if rng.random() < 0.25:
            out.append(rng.choice(THAI_VOWELS))
        out.append(rng.choice(THAI_CONS))
        if rng.random() < 0.4:
            out.append(rng.choice(THAI_MARKS))
    return "".join(out)


def hangul_word(rng):
    return "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(1, 4)))


def cjk_run(rng):
    # U+4E00..U+9FA5, the CJK block of Unicode 1.1; frequent characters sit at its start.
    return "".join(chr(0x4E00 + int(rng.triangular(0, 0x51A5, 0x300))) for _ in range(rng.randint(1, 14)))


def kana_run(rng):
    alphabet = HIRAGANA if rng.random() < 0.6 else KATAKANA
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8)))


def arabic_word(rng):
    out = []
    for _ in range(rng.randint(2, 7)):
        out.append(rng.choice(ARABIC))
        if rng.random() < 0.3:
            out.append(rng.choice(ARABIC_MARKS))
    return "".join(out)


def hebrew_word(rng):
    out = []
    for _ in range(rng.randint(2, 6)):
        out.append(rng.choice(HEBREW))
        if rng.random() < 0.25:
            out.append(rng.choice(HEBREW_MARKS))
    return "".join(out)


def number(rng):
    r = rng.random()
    if r < 0.25:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if r < 0.4:
        return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 6)}f}"
    if r < 0.5:
        return f"{rng.randint(1, 999)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}"
    if r < 0.6:
        return f"0x{rng.getrandbits(32):08X}"
    if r < 0.7:
        return f"{rng.uniform(1, 10):.2f}e{rng.randint(-30, 30)}"
    if r < 0.8:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if r < 0.9:
        return "".join(rng.choice(NUMBER_CHARS) for _ in range(rng.randint(1, 5)))
    return f"+{rng.randint(1, 99)} ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


def emoji(rng):
    r = rng.random()
    if r < 0.45:
        return rng.choice(EMOJI)
    if r < 0.6:
        return rng.choice("👍👋🙏💪🤝👏✋👌") + rng.choice(SKIN_TONES)
    if r < 0.8:
        return rng.choice(ZWJ_SEQUENCES)
    if r < 0.9:
        return rng.choice(REGIONAL) + rng.choice(REGIONAL)
    return rng.choice("0123456789#*") + "\uFE0F\u20E3"


def combining_pile(rng):
    base = rng.choice(LATIN_LOWER + "0123456789 ")
    return base + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 4)))


def decomposed(word):
    return unicodedata.normalize("NFD", word)


def misordered(rng):
    # Dot below (ccc 220) and circumflex (ccc 230) in the wrong order around a base: NFC gives the precomposed form.
    base = rng.choice("aeoAEO")
    return base + "\u0302\u0323" if rng.random() < 0.5 else base + "\u0307\u0323"


def hangul_jamo(rng):
    return unicodedata.normalize("NFD", hangul_word(rng))


def punct_run(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(PUNCT) * rng.randint(2, 12)
    if r < 0.6:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 6)))
    return rng.choice(["...", "?!", "!?", "---", "===", "```", '"""', "''", "->", "=>", "::", "//", "/*", "*/", "<!--",
                       "-->", "&&", "||", "!=", "<=", ">=", "**", "%%", "@@", "~~", "^^"])


def whitespace_run(rng):
    r = rng.random()
    if r < 0.25:
        return " " * rng.randint(2, 9)
    if r < 0.4:
        return "\n" * rng.randint(1, 4)
    if r < 0.5:
        return "\r\n" * rng.randint(1, 3)
    if r < 0.6:
        return "\t" * rng.randint(1, 4)
    if r < 0.75:
        return "".join(rng.choice([" ", " ", "\t", "\n", "\r\n", "\r"]) for _ in range(rng.randint(2, 8)))
    if r < 0.9:
        return rng.choice(SPACES) * rng.randint(1, 3)
    return rng.choice(NOT_SPACES + CONTROLS)


def special(rng):
    r = rng.random()
    if r < 0.55:
        return rng.choice(SPECIAL_TOKENS)
    if r < 0.75:
        return rng.choice(SPECIAL_LOOKALIKES)
    if r < 0.9:
        return "".join(rng.choice(SPECIAL_TOKENS) for _ in range(rng.randint(2, 4)))
    return rng.choice(SPECIAL_TOKENS) + rng.choice(["\n", " ", "\n\n", "user\n", "assistant\n"])


# ---------------------------------------------------------------------------------------------------------------------
# Composition


class Corpus:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        rng = self.rng
        self.latin = [latin_word(rng) for _ in range(6000)]
        self.greek = make_words(rng, GREEK, 800) + [w.capitalize() for w in make_words(rng, GREEK, 100)]
        self.greek += make_words(rng, GREEK_UPPER, 50)
        self.cyrillic = make_words(rng, CYRILLIC, 1200) + [w.capitalize() for w in make_words(rng, CYRILLIC, 200)]
        self.cyrillic += make_words(rng, CYRILLIC_UPPER, 50)
        self.arabic = [arabic_word(rng) for _ in range(800)]
        self.hebrew = [hebrew_word(rng) for _ in range(600)]
        self.devanagari = [devanagari_word(rng) for _ in range(800)]
        self.thai = [thai_word(rng) for _ in range(800)]
        self.hangul = [hangul_word(rng) for _ in range(1500)]
        self.identifiers = ["_".join(rng.sample(self.latin[:3000], rng.randint(1, 3))).lower() for _ in range(800)]
        self.identifiers = ["".join(c for c in i if c.isascii() and (c.isalnum() or c == "_")) or "x"
                            for i in self.identifiers]

    def word(self):
        rng = self.rng
        r = rng.random()
        if r < 0.40:
            w = rng.choice(self.latin)
            return decomposed(w) if rng.random() < 0.08 else w
        if r < 0.47:
            w = rng.choice(self.greek)
            return decomposed(w) if rng.random() < 0.1 else w
        if r < 0.55:
            w = rng.choice(self.cyrillic)
            return decomposed(w) if rng.random() < 0.1 else w
        if r < 0.60:
            return rng.choice(self.arabic)
        if r < 0.64:
            return rng.choice(self.hebrew)
        if r < 0.69:
            return rng.choice(self.devanagari)
        if r < 0.74:
            return rng.choice(self.thai) + (rng.choice(self.thai) if rng.random() < 0.5 else "")
        if r < 0.82:
            return cjk_run(rng)
        if r < 0.86:
            return kana_run(rng) if rng.random() < 0.9 else unicodedata.normalize("NFD", kana_run(rng))
        if r < 0.92:
            w = rng.choice(self.hangul)
            return hangul_jamo(rng) if rng.random() < 0.05 else w
        if r < 0.94:
            return "".join(rng.choice(FULLWIDTH) for _ in range(rng.randint(1, 6)))
        return rng.choice(self.latin) + rng.choice(ALL_CONTRACTIONS)

    def sentence(self):
        rng = self.rng
        parts = []
        for i in range(rng.randint(3, 18)):
            r = rng.random()
            if r < 0.72:
                tok = self.word()
            elif r < 0.79:
                tok = number(rng)
            elif r < 0.84:
                tok = emoji(rng)
            elif r < 0.88:
                tok = rng.choice(ALL_CONTRACTIONS) + (rng.choice(self.latin) if rng.random() < 0.5 else "")
            elif r < 0.91:
                tok = punct_run(rng)
            elif r < 0.93:
                tok = combining_pile(rng)
            elif r < 0.94:
                tok = misordered(rng)
            elif r < 0.96:
                tok = special(rng)
            else:
                tok = whitespace_run(rng)
            sep = " " if rng.random() < 0.85 else rng.choice(["", "  ", "\t", ", ", "; ", " - ", "\u00A0", "\u3000"])
            parts.append(tok + sep)
        end = rng.choice([".", ".", ".", "!", "?", "…", "。", "！", "？", "", "...", "!!", "?!"])
        return "".join(parts).rstrip(" ") + end

    def paragraph(self):
        rng = self.rng
        text = " ".join(self.sentence() for _ in range(rng.randint(1, 6)))
        r = rng.random()
        if r < 0.1:
            text = "    " + text
        elif r < 0.15:
            text = "\t" + text
        elif r < 0.2:
            text = "- " + text
        return text

    def code(self):
        rng = self.rng
        ids = self.identifiers
        a, b, c = rng.choice(ids), rng.choice(ids), rng.choice(ids)
        n = rng.randint(0, 999)
        indent = rng.choice(["    ", "  ", "\t"])
        templates = [
            f"def {a}({b}, {c}=None):\n{indent}\"\"\"{self.sentence()}\"\"\"\n{indent}if {b} is None:\n"
            f"{indent}{indent}return {n}\n{indent}return [{c} * 2 for {c} in {b}]  # {self.sentence()}\n",
            f"int {a}(const std::vector<int>& {b}) {{\n{indent}int {c} = {n};\n{indent}for (int i = 0; i < "
            f"(int){b}.size(); ++i) {c} += {b}[i] << 2;\n{indent}return {c}; // {self.word()}\n}}\n",
            f"const {a} = async ({b}) => {{\n{indent}const {{ {c} }} = await fetch(`/api/{b}/${{{n}}}`);\n"
            f"{indent}return {c}?.map((x) => x !== null ? x : '{self.word()}');\n}};\n",
            f'{{"{a}": {n}, "{b}": [{n}, {n * 3}, "{self.word()}"], "{c}": {{"ok": true, "v": null}}}}\n',
            f"for f in $(ls {a}/*.txt); do\n{indent}grep -n \"{b}\" \"$f\" | sed 's/{c}/X/g' >> out.log\ndone\n",
            f"SELECT {a}, COUNT(*) AS {b} FROM {c} WHERE {a} <> '{self.word()}' GROUP BY {a};\n",
            f"#include <{a}.h>\n#define {b.upper()} {n}\nstatic inline int {c}(void) {{ return {b.upper()}; }}\n",
            f"class {a.capitalize()}:\r\n{indent}def __init__(self):\r\n{indent}{indent}self.{b} = {n}\r\n",
        ]
        return rng.choice(templates)

    def chat(self):
        rng = self.rng
        turns = [f"<|im_start|>system\n{self.paragraph()}<|im_end|>\n"]
        for _ in range(rng.randint(1, 3)):
            turns.append(f"<|im_start|>user\n{self.paragraph()}<|im_end|>\n")
            think = f"<think>\n{self.sentence()}\n</think>\n\n" if rng.random() < 0.5 else ""
            tool = (f"<tool_call>\n{{\"name\": \"{rng.choice(self.identifiers)}\", \"arguments\": {{}}}}\n</tool_call>"
                    if rng.random() < 0.3 else "")
            turns.append(f"<|im_start|>assistant\n{think}{self.paragraph()}{tool}<|im_end|>\n")
        return "".join(turns)

    def block(self):
        rng = self.rng
        r = rng.random()
        if r < 0.7:
            body = self.paragraph()
        elif r < 0.85:
            body = self.code()
        elif r < 0.93:
            body = self.chat()
        else:
            body = " ".join(self.sentence() for _ in range(20))  # a long line
        return body + rng.choice(["\n\n", "\n\n", "\n", "\n\n\n", "\r\n\r\n", "\n \n", "  \n\n", "\n\t\n"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                                  "data", "tokenizer", "corpus.txt"))
    ap.add_argument("--bytes", type=int, default=1_200_000, help="stop once the text has at least this many bytes")
    args = ap.parse_args()

    corpus = Corpus(SEED)
    # Fixed openers: every contraction case, the special tokens and whitespace shapes at least once.
    blocks = [" ".join("I" + c for c in ALL_CONTRACTIONS) + "\n\n", "".join(SPECIAL_TOKENS) + "\n\n",
              " ".join(SPECIAL_TOKENS) + "\n\n", "a \n\n b\t\n c  \r\n d   \n\n\n e" + "".join(SPACES) + "f\n\n"]
    size = sum(len(b.encode()) for b in blocks)
    while size < args.bytes:
        b = corpus.block()
        blocks.append(b)
        size += len(b.encode())
    text = "".join(blocks)
    data = text.encode("utf-8")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"wrote {os.path.normpath(args.out)}: {len(data)} bytes, {len(text)} characters, "
          f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
